/* A plugin built for a future, incompatible ABI major: must be refused. */
#include "stub.h"

static const struct mittari_plugin desc = {
    .abi_version = (9u << 16) | 0u,
    .size = sizeof(struct mittari_plugin),
    .name = "badabi",
    .version = "1",
    .description = "wrong ABI major",
    STUB_CALLBACKS,
};
MITTARI_PLUGIN_DEFINE(desc)
