# shellcheck shell=bash
# Sourced by .ci/run. Builds HashiCorp Vault v1.21.0 from tools/vault (once;
# cached), starts a dev server with TLS on a free loopback port, and exports
# what the crypto/keystore integration tests need:
#   VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT, FEDTUNE_VAULT_TEST=1
# The server and its temporary directory are removed on exit.

fedtune_vault_setup() {
  local version=v1.21.0
  local cache="${XDG_CACHE_HOME:-$HOME/.cache}/fedtune/vault-$version"
  local bin="$cache/vault"
  if [ ! -x "$bin" ]; then
    mkdir -p "$cache" || return 1
    echo "building Vault $version into $cache (first run only; about 10 minutes)"
    if ! (cd tools/vault && go build -buildvcs=false -o "$bin.tmp" github.com/hashicorp/vault) >"$cache/build.log" 2>&1; then
      echo "vault build failed; last lines of $cache/build.log:" >&2
      tail -n 20 "$cache/build.log" >&2
      rm -f "$bin.tmp"
      return 1
    fi
    mv "$bin.tmp" "$bin"
  fi

  # A free port: nothing answers a TCP connect on it.
  local port
  for port in $(seq 8200 8299); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      break
    fi
  done

  local dir token
  dir=$(mktemp -d "${TMPDIR:-/tmp}/fedtune-vault.XXXXXX") || return 1
  token="fedtune-ci-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  "$bin" server -dev -dev-tls -dev-tls-cert-dir="$dir" \
    -dev-root-token-id="$token" -dev-listen-address="127.0.0.1:$port" \
    >"$dir/vault.log" 2>&1 &
  local pid=$!
  ci_on_exit "kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf '$dir'"

  local i
  for i in $(seq 1 120); do
    if [ -s "$dir/vault-ca.pem" ] &&
      VAULT_ADDR="https://127.0.0.1:$port" VAULT_CACERT="$dir/vault-ca.pem" \
        "$bin" status >/dev/null 2>&1; then
      export VAULT_ADDR="https://127.0.0.1:$port"
      export VAULT_CACERT="$dir/vault-ca.pem"
      export VAULT_TOKEN="$token"
      export FEDTUNE_VAULT_TEST=1
      echo "vault $version dev server on $VAULT_ADDR"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      break
    fi
    sleep 0.5
  done
  echo "vault dev server did not become ready; its log:" >&2
  tail -n 30 "$dir/vault.log" >&2
  return 1
}

fedtune_vault_setup
unset -f fedtune_vault_setup
