/*
 * props: reading an org.bluez.Device1 property set (a{sv}) out of a D-Bus
 * message into a struct ble_props: RSSI, TxPower, AddressType,
 * ManufacturerData and ServiceData. A property of an unexpected type is
 * skipped and counted, never trusted; unknown properties are skipped.
 *
 * Owns nothing: the data pointers in ble_props point into the message.
 * Any thread, one message at a time. Fuzzed (tests/fuzz/fuzz_ble_props.c).
 */
#ifndef BLE_PROPS_H
#define BLE_PROPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#define BLE_PROPS_MAX 8 /* ManufacturerData / ServiceData entries taken per message */

/* One Device1 property set. Pointers are borrowed from the D-Bus message
 * for the duration of the callback. */
struct ble_props {
    uint8_t addr[6];
    bool full;    /* the whole property set (added, managed objects, GetAll) */
    bool fetched; /* the answer to ble_bluez_fetch (maybe empty: the device is gone) */
    bool has_type, random;
    bool has_rssi;
    int16_t rssi;
    bool has_txpower;
    int16_t txpower;
    size_t nmfr;
    struct {
        uint16_t company;
        const uint8_t *d;
        size_t n;
    } mfr[BLE_PROPS_MAX];
    size_t nsvc;
    struct {
        uint8_t uuid[16];
        const uint8_t *d;
        size_t n;
    } svc[BLE_PROPS_MAX];
    unsigned bad; /* properties of an unexpected type or form, skipped */
};

/* Reads the a{sv} at the message's read position into p (which the caller
 * zeroed and filled with the address): 0, or a negative errno when the
 * message is not an a{sv} there (p may then hold part of it: do not use). */
int ble_props_parse(sd_bus_message *m, struct ble_props *p);

/* The bool property name in the a{sv} at the read position (consumed):
 * 1 found (in *v), 0 not there or not a bool, or a negative errno. */
int ble_props_find_bool(sd_bus_message *m, const char *name, bool *v);

#endif
