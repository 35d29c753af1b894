/* Small helpers of agent/util.c that no module test covers. */
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "util.h"

struct seen {
    char name[16];
    int nice_before, nice_after;
};

static void *background(void *arg)
{
    struct seen *s = arg;
    s->nice_before = getpriority(PRIO_PROCESS, (id_t)gettid());
    mt_thread_background("mt-testbg", 7);
    s->nice_after = getpriority(PRIO_PROCESS, (id_t)gettid());
    pthread_getname_np(pthread_self(), s->name, sizeof(s->name));
    return NULL;
}

/* The thread it is called on gets the name and the nice, the process keeps
 * its own. */
static void thread_background(void **state)
{
    struct seen s = {0};
    pthread_t t;
    int before = getpriority(PRIO_PROCESS, (id_t)gettid());
    (void)state;

    assert_int_equal(pthread_create(&t, NULL, background, &s), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_string_equal(s.name, "mt-testbg");
    assert_int_equal(s.nice_after, s.nice_before + 7 > 19 ? 19 : s.nice_before + 7);
    assert_int_equal(getpriority(PRIO_PROCESS, (id_t)gettid()), before);
}

static void *idle(void *arg)
{
    int *policy = arg;
    mt_thread_idle("mt-testidle");
    *policy = sched_getscheduler(0);
    return NULL;
}

static void thread_idle(void **state)
{
    int policy = -1;
    pthread_t t;
    (void)state;

    assert_int_equal(pthread_create(&t, NULL, idle, &policy), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(policy, SCHED_IDLE);
    assert_int_equal(sched_getscheduler(0), SCHED_OTHER); /* the caller's own */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(thread_background),
        cmocka_unit_test(thread_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
