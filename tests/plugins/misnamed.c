/* Installed as misnamed.so but calls itself "other": refused. */
#include <mittari/mittari.h>

static int create(const struct mittari_host *h, struct mittari_ctx *c, const void *cf, void **s)
{
    (void)h, (void)c, (void)cf, (void)s;
    return 0;
}
static int start(void *s)
{
    (void)s;
    return 0;
}
static void stop(void *s)
{
    (void)s;
}

static const struct mittari_plugin desc = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_plugin),
    .name = "other",
    .version = "1",
    .description = "name differs from the file",
    .create = create,
    .start = start,
    .stop = stop,
    .destroy = stop,
};
MITTARI_PLUGIN_DEFINE(desc)
