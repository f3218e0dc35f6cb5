# Runs for every image uploaded to input/: a half-size grayscale PNG goes to output/.
set -eu
name=$(basename "${SCAR_INPUT_FILE%.*}")
convert "$SCAR_INPUT_FILE" -resize 50% -colorspace Gray "$SCAR_OUTPUT_DIR/$name.png"
identify -format '%f %wx%h %[colorspace]\n' "$SCAR_OUTPUT_DIR/$name.png"
