/* A plugin built for a future, incompatible ABI major: must be refused. */
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
    .abi_version = (9u << 16) | 0u,
    .size = sizeof(struct mittari_plugin),
    .name = "badabi",
    .version = "1",
    .description = "wrong ABI major",
    .create = create,
    .start = start,
    .stop = stop,
    .destroy = stop,
};
MITTARI_PLUGIN_DEFINE(desc)
