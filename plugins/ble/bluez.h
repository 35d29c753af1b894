/*
 * bluez: the BlueZ D-Bus client of the ble plugin. Connects to the system
 * bus (or a configured address), follows the owner of org.bluez, selects
 * the adapter, sets the discovery filter (LE, duplicate data, optional RSSI
 * floor), starts discovery, and reports every Device1 property set of that
 * adapter's devices (InterfacesAdded, PropertiesChanged, GetManagedObjects,
 * GetAll) as a struct ble_props. bluetoothd stopping or restarting, the
 * adapter going away or being powered off, and a lost bus are reported as
 * down with a reason, and scanning resumes by itself when they come back.
 *
 * Owns the sd-bus connection and its sdloop. Loop thread only; never
 * blocks (asynchronous calls only). Reasons never hold a device address;
 * device addresses leave only in struct ble_props, in memory.
 */
#ifndef BLE_BLUEZ_H
#define BLE_BLUEZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mittari/mittari.h>

#include "props.h"

struct ble_bluez_conf {
    const char *bus_address; /* NULL: $DBUS_SYSTEM_BUS_ADDRESS or the system bus socket */
    const char *adapter;     /* "hci0"; NULL: the first adapter by name */
    int rssi_floor;          /* the discovery filter's RSSI; 0 = none */
    int64_t retry_ms;        /* wait before reconnecting or restarting discovery */
};

struct ble_bluez_ops {
    /* up = discovery is running on the adapter; reason says why not. */
    void (*health)(void *arg, bool up, const char *reason);
    void (*device)(void *arg, const struct ble_props *p);
    /* BlueZ dropped a device object (an unpaired device unseen for 30 s):
     * not a departure. */
    void (*removed)(void *arg, const uint8_t addr[6]);
    void *arg;
};

struct ble_bluez_stats {
    uint64_t discovery_restarts; /* discovery stopped under us and was started again */
    uint64_t reconnects;         /* bus connections made after the first */
};

struct ble_bluez;

/* conf is borrowed until destroy. 0 or -ENOMEM. */
int ble_bluez_create(struct ble_bluez **out, const struct mittari_host *host,
                     struct mittari_ctx *ctx, const struct ble_bluez_conf *conf,
                     const struct ble_bluez_ops *ops);
/* Connects, or reports down and retries every retry_ms. */
void ble_bluez_start(struct ble_bluez *b);
/* Closes the connection (BlueZ ends this client's discovery session with
 * it); no callback after. */
void ble_bluez_stop(struct ble_bluez *b);
void ble_bluez_destroy(struct ble_bluez *b);
/* Asks BlueZ for the whole property set of a device of the adapter; the
 * answer comes through ops.device with fetched set. 0, or -ENOTCONN when
 * there is no adapter to ask. */
int ble_bluez_fetch(struct ble_bluez *b, const uint8_t addr[6]);
void ble_bluez_stats(const struct ble_bluez *b, struct ble_bluez_stats *st);

#endif
