# Runs for every HTTP request: the POSTed body is $SCAR_INPUT_FILE; what the script prints is
# the response body. Query parameters arrive as HTTP_QUERY_<NAME> variables only
# (?animal=tux sets $HTTP_QUERY_ANIMAL), so a caller can never set PATH or LD_PRELOAD.
set -eu
/usr/games/cowsay -f "${HTTP_QUERY_ANIMAL:-default}" < "$SCAR_INPUT_FILE"
