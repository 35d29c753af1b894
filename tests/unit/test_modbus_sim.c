/* The Modbus simulator (tests/modbus/simdev.c) the plugin's tests rely on,
 * checked with a plain libmodbus client: its CRC with the DEVICES.md
 * vector, counters in each word order, scripted faults. If the simulator
 * lied, the plugin's tests would prove nothing. */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include <modbus.h>

#include "decode.h"
#include "simdev.h"

static struct sim *S;
static pthread_t TH;
static atomic_int STOP;

static void *run(void *a)
{
    (void)a;
    while (!atomic_load(&STOP))
        sim_step(S, 20);
    return NULL;
}

static int setup(void **st)
{
    (void)st;
    S = sim_new(3, 50);
    atomic_store(&STOP, 0);
    return pthread_create(&TH, NULL, run, NULL);
}

static int teardown(void **st)
{
    (void)st;
    atomic_store(&STOP, 1);
    pthread_join(TH, NULL);
    sim_free(S);
    return 0;
}

static void cmd(const char *line)
{
    char err[256];
    sim_lock(S);
    int rc = sim_command(S, line, err, sizeof(err));
    sim_unlock(S);
    if (rc)
        fail_msg("%s: %s", line, err);
}

/* DEVICES.md: 01 03 00 00 00 0A -> C5 CD (low byte first) */
static void crc_vector(void **st)
{
    (void)st;
    const uint8_t f[] = {0x01, 0x03, 0x00, 0x00, 0x00, 0x0A};
    uint16_t c = sim_crc16(f, sizeof(f));
    assert_int_equal(c & 0xff, 0xC5);
    assert_int_equal(c >> 8, 0xCD);
}

static modbus_t *client(const char *dev)
{
    sim_lock(S);
    int port = sim_port(S, dev);
    sim_unlock(S);
    modbus_t *mb = modbus_new_tcp("127.0.0.1", port);
    assert_non_null(mb);
    modbus_set_response_timeout(mb, 0, 200000);
    assert_int_equal(modbus_connect(mb), 0);
    return mb;
}

static void counters_in_every_order(void **st)
{
    (void)st;
    static const char *const orders[] = {"ABCD", "CDAB", "BADC", "DCBA"};
    char line[200];
    cmd("tcp c");
    for (int o = 0; o < 4; o++) {
        snprintf(line, sizeof(line), "counter c fn=input addr=%d type=u32 order=%s start=4294967290 step=3",
                 2 * o, orders[o]);
        cmd(line);
    }
    modbus_t *mb = client("c");
    uint16_t w[8];
    int wrapped = 0;
    for (int round = 0; round < 40 && wrapped < 4; round++) {
        cmd("freeze");
        assert_int_equal(modbus_read_input_registers(mb, 0, 8, w), 8);
        wrapped = 0;
        for (int o = 0; o < 4; o++) {
            uint64_t value, total, rf;
            sim_lock(S);
            assert_int_equal(sim_counter(S, "c", (unsigned)(2 * o), &value, &total, &rf), 0);
            sim_unlock(S);
            /* what the client decodes in that order is what the device holds */
            assert_true(mbd_assemble(w + 2 * o, 2, MBD_ABCD + o) == value);
            wrapped += value < 100; /* went past 2^32 */
        }
        cmd("resume");
        usleep(60000);
    }
    assert_int_equal(wrapped, 4); /* every order decoded to a value that wrapped */
    modbus_close(mb);
    modbus_free(mb);
}

static void faults(void **st)
{
    (void)st;
    uint16_t w[2];
    cmd("tcp f");
    cmd("counter f fn=holding addr=0 type=u16 start=42 step=0");
    modbus_t *mb = client("f");
    assert_int_equal(modbus_read_registers(mb, 0, 1, w), 1);
    assert_int_equal(w[0], 42);
    /* past the simulated map: libmodbus answers illegal data address */
    assert_int_equal(modbus_read_registers(mb, 2000, 1, w), -1);
    assert_int_equal(errno, EMBXILADD);
    cmd("exception f 4");
    assert_int_equal(modbus_read_registers(mb, 0, 1, w), -1);
    assert_int_equal(errno, EMBXSFAIL);
    cmd("exception f off");
    cmd("mute f on");
    assert_int_equal(modbus_read_registers(mb, 0, 1, w), -1);
    assert_int_equal(errno, ETIMEDOUT);
    modbus_close(mb);
    modbus_free(mb);
    cmd("mute f off");
    cmd("reboot f 0");
    mb = client("f");
    assert_int_equal(modbus_read_registers(mb, 0, 1, w), 1);
    assert_int_equal(w[0], 0);
    modbus_close(mb);
    cmd("down f");
    assert_int_equal(modbus_connect(mb), -1);
    assert_int_equal(errno, ECONNREFUSED);
    cmd("up f");
    assert_int_equal(modbus_connect(mb), 0);
    assert_int_equal(modbus_read_registers(mb, 0, 1, w), 1);
    modbus_close(mb);
    modbus_free(mb);
}

static void rtu_bad_crc(void **st)
{
    (void)st;
    uint16_t w[2];
    cmd("rtu r path=auto unit=5");
    cmd("counter r fn=holding addr=0 type=u16 start=11 step=0");
    sim_lock(S);
    char path[256];
    snprintf(path, sizeof(path), "%s", sim_path(S, "r"));
    sim_unlock(S);
    modbus_t *mb = modbus_new_rtu(path, 19200, 'N', 8, 1);
    assert_int_equal(modbus_connect(mb), 0);
    modbus_set_slave(mb, 5);
    modbus_set_response_timeout(mb, 0, 300000);
    assert_int_equal(modbus_read_registers(mb, 0, 1, w), 1);
    assert_int_equal(w[0], 11);
    cmd("crc r on");
    assert_int_equal(modbus_read_registers(mb, 0, 1, w), -1);
    assert_int_equal(errno, EMBBADCRC);
    cmd("crc r off");
    modbus_flush(mb);
    modbus_set_slave(mb, 6); /* nobody: silence */
    assert_int_equal(modbus_read_registers(mb, 0, 1, w), -1);
    assert_int_equal(errno, ETIMEDOUT);
    modbus_close(mb);
    modbus_free(mb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc_vector),
        cmocka_unit_test_setup_teardown(counters_in_every_order, setup, teardown),
        cmocka_unit_test_setup_teardown(faults, setup, teardown),
        cmocka_unit_test_setup_teardown(rtu_bad_crc, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
