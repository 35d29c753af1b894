/* A plugin built for a newer ABI minor than the agent has: must be refused. */
#include "stub.h"

static const struct mittari_plugin desc = {
    .abi_version = ((uint32_t)MITTARI_ABI_MAJOR << 16) | 99u,
    .size = sizeof(struct mittari_plugin),
    .name = "newminor",
    .version = "1",
    .description = "needs a newer ABI minor",
    STUB_CALLBACKS,
};
MITTARI_PLUGIN_DEFINE(desc)
