/* No-op lifecycle callbacks for the test plugins that only test loading and
 * checking (wrong ABI, wrong name, bad option table). */
#ifndef MT_TEST_STUB_H
#define MT_TEST_STUB_H

#include <mittari/mittari.h>

static int stub_create(const struct mittari_host *h, struct mittari_ctx *c, const void *cf,
                       void **s)
{
    (void)h, (void)c, (void)cf, (void)s;
    return 0;
}

static int stub_start(void *s)
{
    (void)s;
    return 0;
}

static void stub_stop(void *s)
{
    (void)s;
}

#define STUB_CALLBACKS                                                                             \
    .create = stub_create, .start = stub_start, .stop = stub_stop, .destroy = stub_stop

#endif
