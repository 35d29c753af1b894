#!/bin/bash
# Packaging: the systemd unit is valid and hardened (exposure <= 2.0), the
# SDK header compiles on its own, and an out-of-tree plugin builds with
# nothing but the installed header and pkg-config file and loads.
. "$(dirname "$0")/lib.sh"

unit="$SOURCE_DIR/packaging/systemd/mittari.service"
if command -v systemd-analyze >/dev/null; then
  out=$(systemd-analyze security --offline=true --threshold=20 "$unit" 2>&1) || fail "unit exposure above 2.0: $(echo "$out" | tail -1)"
  echo "$out" | tail -1
  grep -q '^Type=notify' "$unit" || fail "unit is not Type=notify"
  grep -q '^RestartPreventExitStatus=3 4' "$unit" || fail "unit restarts on config/storage errors"
else
  fail "systemd-analyze missing (packaging/dev/deps.sh installs it)"
fi

# install into a staging prefix and build a plugin out of tree against it
cmake --install "$BUILD_DIR" --prefix "$T/prefix" >/dev/null || fail "cmake --install"
pc="$T/prefix/lib/pkgconfig"
[ -d "$pc" ] || pc=$(dirname "$(find "$T/prefix" -name mittari.pc | head -1)")
export PKG_CONFIG_PATH="$pc"
pkg-config --exists mittari || fail "mittari.pc not installed"
cat >"$T/hello.c" <<'C'
#include <mittari/mittari.h>
struct conf { int64_t n; };
static const struct mittari_option opts[] = {
    {.name = "n", .type = MITTARI_OPT_INT, .def = "3", .offset = offsetof(struct conf, n), .help = "how many"},
    {0},
};
static const struct mittari_host *H;
static struct mittari_ctx *C;
static const struct conf *K;
static int create(const struct mittari_host *h, struct mittari_ctx *c, const void *cf, void **s)
{ H = h; C = c; K = cf; *s = (void *)cf; return 0; }
static int start(void *s)
{
    (void)s;
    for (int64_t i = 0; i < K->n; i++) {
        struct mittari_reading r = MITTARI_READING_INIT;
        r.metric = "hello"; r.kind = MITTARI_KIND_EVENT; r.value = 1;
        H->emit(C, &r);
    }
    return 0;
}
static void stop(void *s) { (void)s; }
static const struct mittari_plugin d = {
    .abi_version = MITTARI_ABI_VERSION, .size = sizeof(struct mittari_plugin),
    .name = "hello", .version = "0.1", .description = "out-of-tree example",
    .options = opts, .config_size = sizeof(struct conf),
    .create = create, .start = start, .stop = stop, .destroy = stop,
};
MITTARI_PLUGIN_DEFINE(d)
C
mkdir -p "$T/plugins"
cc -Wall -Wextra -Werror -std=c11 $(pkg-config --cflags mittari) -shared -fPIC -o "$T/plugins/hello.so" "$T/hello.c" || fail "out-of-tree plugin does not build"
"$MITTARI" plugins hello --plugin-dir "$T/plugins" | grep -q "input plugin hello 0.1 (ABI 1.1)" || fail "out-of-tree plugin not loadable"

mkdir -p "$T/conf"
cat >"$T/conf/a.yaml" <<YAML
agent: {site: it-pkg, data_dir: $T/data}
inputs: {h: {plugin: hello, n: 5}}
YAML
"$MITTARI" run -c "$T/conf" --plugin-dir "$T/plugins" 2>>"$T/agent.log" & AGENT_PID=$!
wait_for 5 test -f "$T/data/mittari.db" || fail "no log"
wait_for 5 sh -c "[ \"\$(sqlite3 $T/data/mittari.db 'select count(*) from readings' 2>/dev/null)\" = 5 ]" || fail "hello readings not stored"
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit $AGENT_STATUS"
ok "packaging: unit hardened, SDK builds a plugin out of tree"
