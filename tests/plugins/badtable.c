/* An option table whose field lies outside the config struct: refused
 * before any of its code runs. */
#include <mittari/mittari.h>

struct conf {
    int64_t x;
};

static const struct mittari_option opts[] = {
    {.name = "x", .type = MITTARI_OPT_INT, .offset = 64, .help = "out of bounds"},
    {0},
};

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
    .name = "badtable",
    .version = "1",
    .description = "option outside the config struct",
    .options = opts,
    .config_size = sizeof(struct conf),
    .create = create,
    .start = start,
    .stop = stop,
    .destroy = stop,
};
MITTARI_PLUGIN_DEFINE(desc)
