/* Device1 property sets read out of real sd-bus messages: every property
 * the plugin uses, exactly; properties of an unexpected type (as
 * python-dbusmock's template sends) skipped and counted without losing the
 * rest; a body that is no a{sv} refused. */
#include "testutil.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adv.h"
#include "props.h"

static sd_bus *bus;

/* sd-bus builds messages only on an open bus: one end of a socketpair
 * whose other end is never read */
static int setup(void **s)
{
    (void)s;
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds))
        return -1;
    /* fds[1] stays open: sd_bus_start writes its greeting to it */
    if (sd_bus_new(&bus) < 0 || sd_bus_set_fd(bus, fds[0], fds[0]) < 0 || sd_bus_start(bus) < 0)
        return -1;
    return 0;
}

static int teardown(void **s)
{
    (void)s;
    sd_bus_close_unref(bus);
    return 0;
}

static sd_bus_message *signal_msg(void)
{
    sd_bus_message *m = NULL;
    assert_true(sd_bus_message_new_signal(bus, &m, "/org/bluez/hci0/dev_5A_00_00_00_00_01",
                                          "org.freedesktop.DBus.Properties",
                                          "PropertiesChanged") >= 0);
    return m;
}

static void ready(sd_bus_message *m)
{
    assert_true(sd_bus_message_seal(m, 1, 0) >= 0);
    assert_true(sd_bus_message_rewind(m, true) >= 0);
}

static void append_ay_entry(sd_bus_message *m, const char *dict, const void *key, const uint8_t *d,
                            size_t n)
{
    assert_true(sd_bus_message_open_container(m, 'e', dict) >= 0);
    assert_true(sd_bus_message_append_basic(m, dict[0], key) >= 0);
    assert_true(sd_bus_message_open_container(m, 'v', "ay") >= 0);
    assert_true(sd_bus_message_append_array(m, 'y', d, n) >= 0);
    assert_true(sd_bus_message_close_container(m) >= 0);
    assert_true(sd_bus_message_close_container(m) >= 0);
}

static const uint8_t ibeacon[23] = {0x02, 0x15, 0xf7, 0x82, 0x6d, 0xa6, 0x4f, 0xa2,
                                    0x4e, 0x98, 0x80, 0x24, 0xbc, 0x5b, 0x71, 0xe0,
                                    0x89, 0x3e, 0x00, 0x01, 0x9c, 0x40, 0xc5};
static const uint8_t tlm[14] = {0x20, 0, 0x0b, 0xb8, 0xfa, 0xc0, 0, 1, 2, 3, 0, 0, 0x27, 0x10};

static void whole_property_set(void **s)
{
    (void)s;
    sd_bus_message *m = signal_msg();
    uint16_t apple = 0x004C, ms = 0x0006;
    const char *eddy = "0000FEAA-0000-1000-8000-00805F9B34FB";
    const uint8_t msdata[3] = {1, 2, 3};
    struct ble_props p = {0};

    assert_true(sd_bus_message_open_container(m, 'a', "{sv}") >= 0);
    assert_true(sd_bus_message_append(m, "{sv}", "Address", "s", "5A:00:00:00:00:01") >= 0);
    assert_true(sd_bus_message_append(m, "{sv}", "AddressType", "s", "random") >= 0);
    assert_true(sd_bus_message_append(m, "{sv}", "Name", "s", "phone") >= 0);
    assert_true(sd_bus_message_append(m, "{sv}", "RSSI", "n", (int16_t)-67) >= 0);
    assert_true(sd_bus_message_append(m, "{sv}", "TxPower", "n", (int16_t)4) >= 0);
    assert_true(sd_bus_message_append(m, "{sv}", "UUIDs", "as", 1,
                                      "0000feaa-0000-1000-8000-00805f9b34fb") >= 0);
    assert_true(sd_bus_message_open_container(m, 'e', "sv") >= 0);
    assert_true(sd_bus_message_append(m, "s", "ManufacturerData") >= 0);
    assert_true(sd_bus_message_open_container(m, 'v', "a{qv}") >= 0);
    assert_true(sd_bus_message_open_container(m, 'a', "{qv}") >= 0);
    append_ay_entry(m, "qv", &apple, ibeacon, sizeof(ibeacon));
    append_ay_entry(m, "qv", &ms, msdata, sizeof(msdata));
    for (int i = 0; i < 3; i++)
        assert_true(sd_bus_message_close_container(m) >= 0);
    assert_true(sd_bus_message_open_container(m, 'e', "sv") >= 0);
    assert_true(sd_bus_message_append(m, "s", "ServiceData") >= 0);
    assert_true(sd_bus_message_open_container(m, 'v', "a{sv}") >= 0);
    assert_true(sd_bus_message_open_container(m, 'a', "{sv}") >= 0);
    append_ay_entry(m, "sv", eddy, tlm, sizeof(tlm));
    for (int i = 0; i < 3; i++)
        assert_true(sd_bus_message_close_container(m) >= 0);
    assert_true(sd_bus_message_close_container(m) >= 0);
    ready(m);

    assert_int_equal(ble_props_parse(m, &p), 0);
    assert_true(p.has_type && p.random);
    assert_true(p.has_rssi);
    assert_int_equal(p.rssi, -67);
    assert_true(p.has_txpower);
    assert_int_equal(p.txpower, 4);
    assert_int_equal(p.nmfr, 2);
    assert_int_equal(p.mfr[0].company, 0x004C);
    assert_int_equal(p.mfr[0].n, 23);
    assert_memory_equal(p.mfr[0].d, ibeacon, 23);
    assert_int_equal(p.mfr[1].company, 0x0006);
    assert_memory_equal(p.mfr[1].d, msdata, 3);
    assert_int_equal(p.nsvc, 1);
    assert_int_equal(ble_uuid16(p.svc[0].uuid), 0xFEAA);
    assert_int_equal(p.svc[0].n, 14);
    assert_memory_equal(p.svc[0].d, tlm, 14);
    assert_int_equal(p.bad, 0);
    sd_bus_message_unref(m);
}

/* python-dbusmock's template starts devices with ManufacturerData of type
 * aa{qv}, ServiceData aa{sv} (../shared/TESTING.md): skipped and counted,
 * and what comes after them is still read. */
static void unexpected_types_are_skipped(void **s)
{
    (void)s;
    sd_bus_message *m = signal_msg();
    struct ble_props p = {0};

    assert_true(sd_bus_message_open_container(m, 'a', "{sv}") >= 0);
    assert_true(sd_bus_message_append(m, "{sv}", "ManufacturerData", "aa{qv}", 0) >= 0);
    assert_true(sd_bus_message_append(m, "{sv}", "ServiceData", "aa{sv}", 0) >= 0);
    assert_true(sd_bus_message_append(m, "{sv}", "AdvertisingData", "a{yv}", 0) >= 0);
    assert_true(sd_bus_message_append(m, "{sv}", "TxPower", "i", 4) >= 0);        /* not n */
    assert_true(sd_bus_message_append(m, "{sv}", "AddressType", "s", "le") >= 0); /* no such */
    assert_true(sd_bus_message_append(m, "{sv}", "RSSI", "n", (int16_t)-50) >= 0);
    /* a{qv} whose value is not ay, and a{sv} with a key that is no UUID */
    uint16_t apple = 0x004C;
    assert_true(sd_bus_message_open_container(m, 'e', "sv") >= 0);
    assert_true(sd_bus_message_append(m, "s", "ManufacturerData") >= 0);
    assert_true(sd_bus_message_open_container(m, 'v', "a{qv}") >= 0);
    assert_true(sd_bus_message_open_container(m, 'a', "{qv}") >= 0);
    assert_true(sd_bus_message_append(m, "{qv}", apple, "s", "text") >= 0);
    append_ay_entry(m, "qv", &apple, ibeacon, sizeof(ibeacon));
    for (int i = 0; i < 3; i++)
        assert_true(sd_bus_message_close_container(m) >= 0);
    assert_true(sd_bus_message_open_container(m, 'e', "sv") >= 0);
    assert_true(sd_bus_message_append(m, "s", "ServiceData") >= 0);
    assert_true(sd_bus_message_open_container(m, 'v', "a{sv}") >= 0);
    assert_true(sd_bus_message_open_container(m, 'a', "{sv}") >= 0);
    append_ay_entry(m, "sv", "feaa", tlm, sizeof(tlm));
    for (int i = 0; i < 3; i++)
        assert_true(sd_bus_message_close_container(m) >= 0);
    assert_true(sd_bus_message_close_container(m) >= 0);
    ready(m);

    assert_int_equal(ble_props_parse(m, &p), 0);
    assert_true(p.has_rssi);
    assert_int_equal(p.rssi, -50);
    assert_false(p.has_txpower);
    assert_false(p.has_type);
    assert_int_equal(p.nmfr, 1); /* the ay entry after the bad one */
    assert_memory_equal(p.mfr[0].d, ibeacon, 23);
    assert_int_equal(p.nsvc, 0);
    /* ManufacturerData and ServiceData of the wrong type, TxPower, AddressType,
     * the s value, the bad UUID; AdvertisingData is not ours and just skipped */
    assert_int_equal(p.bad, 6);
    sd_bus_message_unref(m);
}

static void many_entries_are_bounded(void **s)
{
    (void)s;
    sd_bus_message *m = signal_msg();
    struct ble_props p = {0};
    uint8_t d = 7;
    assert_true(sd_bus_message_open_container(m, 'a', "{sv}") >= 0);
    assert_true(sd_bus_message_open_container(m, 'e', "sv") >= 0);
    assert_true(sd_bus_message_append(m, "s", "ManufacturerData") >= 0);
    assert_true(sd_bus_message_open_container(m, 'v', "a{qv}") >= 0);
    assert_true(sd_bus_message_open_container(m, 'a', "{qv}") >= 0);
    for (uint16_t c = 0; c < 20; c++)
        append_ay_entry(m, "qv", &c, &d, 1);
    for (int i = 0; i < 4; i++)
        assert_true(sd_bus_message_close_container(m) >= 0);
    ready(m);
    assert_int_equal(ble_props_parse(m, &p), 0);
    assert_int_equal(p.nmfr, BLE_PROPS_MAX);
    assert_int_equal(p.mfr[BLE_PROPS_MAX - 1].company, BLE_PROPS_MAX - 1);
    sd_bus_message_unref(m);
}

static void not_a_property_set(void **s)
{
    (void)s;
    sd_bus_message *m = signal_msg();
    struct ble_props p = {0};
    assert_true(sd_bus_message_append(m, "s", "org.bluez.Device1") >= 0);
    ready(m);
    assert_true(ble_props_parse(m, &p) < 0);
    sd_bus_message_unref(m);
}

static void find_bool_reads_one_property(void **s)
{
    (void)s;
    bool v = false;
    sd_bus_message *m = signal_msg();
    assert_true(sd_bus_message_append(m, "a{sv}", 3, "Discovering", "b", 0, "Powered", "b", 1,
                                      "Name", "s", "x") >= 0);
    ready(m);
    assert_int_equal(ble_props_find_bool(m, "Powered", &v), 1);
    assert_true(v);
    assert_true(sd_bus_message_rewind(m, true) >= 0);
    assert_int_equal(ble_props_find_bool(m, "Discovering", &v), 1);
    assert_false(v);
    assert_true(sd_bus_message_rewind(m, true) >= 0);
    assert_int_equal(ble_props_find_bool(m, "Name", &v), 0); /* not a bool */
    assert_true(sd_bus_message_rewind(m, true) >= 0);
    assert_int_equal(ble_props_find_bool(m, "Pairable", &v), 0);
    sd_bus_message_unref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(whole_property_set),
        cmocka_unit_test(unexpected_types_are_skipped),
        cmocka_unit_test(many_entries_are_bounded),
        cmocka_unit_test(not_a_property_set),
        cmocka_unit_test(find_bool_reads_one_property),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
