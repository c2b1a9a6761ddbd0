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

# librdkafka is built with TLS and SASL/SCRAM against the system OpenSSL: its headers and
# pkg-config must be there (Debian's libssl-dev and pkg-config).
if ! pkg-config --exists openssl 2>/dev/null; then
  echo "== installing libssl-dev and pkg-config (apt-get), for librdkafka's TLS and SASL" >&2
  sudo_cmd=""
  if [[ "$(id -u)" != 0 ]]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    libssl-dev pkg-config >/dev/null
fi

landfall_bin() { echo "$CARGO_TARGET_DIR/release/landfall"; }
