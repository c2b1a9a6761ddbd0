# Shared settings for the project's scripts. Sourced, not run.
#
# The cargo target directory and the Kafka jars live in a per-user cache, so a fresh clone (CI)
# reuses earlier builds when the machine still has them, and builds from scratch when not.
: "${LANDFALL_CACHE_DIR:=${XDG_CACHE_HOME:-$HOME/.cache}/landfall}"
: "${CARGO_TARGET_DIR:=$LANDFALL_CACHE_DIR/target}"
export LANDFALL_CACHE_DIR CARGO_TARGET_DIR
mkdir -p "$LANDFALL_CACHE_DIR"

for tool in cargo java mvn; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool is required (Rust, Java 17 and Maven; see README.md)" >&2
    exit 1
  fi
done

landfall_bin() { echo "$CARGO_TARGET_DIR/release/landfall"; }
