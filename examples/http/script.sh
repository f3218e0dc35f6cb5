# Runs for every HTTP request: the POSTed body is $SCAR_INPUT_FILE; what the script prints is
# the response body. Query parameters arrive as variables (?animal=tux sets $animal).
set -eu
/usr/games/cowsay -f "${animal:-default}" < "$SCAR_INPUT_FILE"
