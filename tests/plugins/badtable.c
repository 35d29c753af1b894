/* An option table whose field lies outside the config struct: refused
 * before any of its code runs. */
#include "stub.h"

struct conf {
    int64_t x;
};

static const struct mittari_option opts[] = {
    {.name = "x", .type = MITTARI_OPT_INT, .offset = 64, .help = "out of bounds"},
    {0},
};

static const struct mittari_plugin desc = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_plugin),
    .name = "badtable",
    .version = "1",
    .description = "option outside the config struct",
    .options = opts,
    .config_size = sizeof(struct conf),
    STUB_CALLBACKS,
};
MITTARI_PLUGIN_DEFINE(desc)
