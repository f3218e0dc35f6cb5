# Runs for every video uploaded to input/: an animated GIF preview goes to output/.
set -eu
name=$(basename "${SCAR_INPUT_FILE%.*}")
ffmpeg -hide_banner -loglevel error -i "$SCAR_INPUT_FILE" -vf "fps=5,scale=32:-1:flags=lanczos" \
  "$SCAR_OUTPUT_DIR/$name.gif"
echo "$name.gif: $(stat -c %s "$SCAR_OUTPUT_DIR/$name.gif") bytes"
