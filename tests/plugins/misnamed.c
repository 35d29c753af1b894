/* Installed as misnamed.so but calls itself "other": refused. */
#include "stub.h"

static const struct mittari_plugin desc = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_plugin),
    .name = "other",
    .version = "1",
    .description = "name differs from the file",
    STUB_CALLBACKS,
};
MITTARI_PLUGIN_DEFINE(desc)
