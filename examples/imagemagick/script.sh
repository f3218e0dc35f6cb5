# Runs for every image uploaded to input/: a half-size grayscale PNG goes to output/. POSTed
# over HTTP instead, the PNG is the response body itself (binary, so it travels base64).
set -eu
if [ -n "${SCAR_HTTP_RESPONSE_DIR:-}" ]; then
  convert "$SCAR_INPUT_FILE" -resize 50% -colorspace Gray "png:$SCAR_HTTP_RESPONSE_DIR/body"
  echo image/png > "$SCAR_HTTP_RESPONSE_DIR/content-type"
  exit 0
fi
name=$(basename "${SCAR_INPUT_FILE%.*}")
convert "$SCAR_INPUT_FILE" -resize 50% -colorspace Gray "$SCAR_OUTPUT_DIR/$name.png"
identify -format '%f %wx%h %[colorspace]\n' "$SCAR_OUTPUT_DIR/$name.png"
