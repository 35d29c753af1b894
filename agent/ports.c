/*
 * ports: lists serial ports for `mittari ports` (ports.h).
 *
 * The stable names are found the way udev makes them: every symlink in
 * /dev/serial/by-id/ and /dev/serial/by-path/ whose target resolves to the
 * port's device node. Pseudo terminals are never listed (libserialport does
 * not see them); they are configured by their path.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <libserialport.h>

#include "ports.h"

static const char *const stable_dirs[] = {"/dev/serial/by-id", "/dev/serial/by-path", NULL};

static int by_name(const void *a, const void *b)
{
    const struct mt_port_info *x = a, *y = b;
    return strcmp(x->name ? x->name : "", y->name ? y->name : "");
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Prints the links in dir that resolve to real (the port's node), sorted. */
static int print_links(FILE *out, const char *dir, const char *real)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX], target[PATH_MAX];
    char *found[64];
    size_t n = 0;

    if (!d)
        return 0; /* no such directory: no USB serial adapter ever seen */
    while ((e = readdir(d)) && n < sizeof(found) / sizeof(found[0])) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (realpath(path, target) && strcmp(target, real) == 0 && (found[n] = strdup(path)))
            n++;
    }
    closedir(d);
    qsort(found, n, sizeof(found[0]), by_string);
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "    %s\n", found[i]);
        free(found[i]);
    }
    return (int)n;
}

static void print_one(FILE *out, const struct mt_port_info *p, const char *const *link_dirs)
{
    char real[PATH_MAX];
    int links = 0;

    if (p->usb) {
        fprintf(out, "%s  USB %04x:%04x", p->name, (unsigned)p->vid & 0xffff,
                (unsigned)p->pid & 0xffff);
        if (p->manufacturer || p->product)
            fprintf(out, "  %s%s%s", p->manufacturer ? p->manufacturer : "",
                    p->manufacturer && p->product ? " " : "", p->product ? p->product : "");
        if (p->serial)
            fprintf(out, "  serial number %s", p->serial);
        fputc('\n', out);
    } else {
        fprintf(out, "%s  %s\n", p->name, p->description ? p->description : "");
    }
    if (realpath(p->name, real))
        for (size_t i = 0; link_dirs[i]; i++)
            links += print_links(out, link_dirs[i], real);
    if (!links)
        fprintf(out, "    (no stable name: configure %s)\n", p->name);
}

int mt_ports_print_list(FILE *out, const struct mt_port_info *ports, size_t n,
                        const char *const *link_dirs)
{
    struct mt_port_info *v = calloc(n ? n : 1, sizeof(*v));

    if (!v)
        return -ENOMEM;
    if (n)
        memcpy(v, ports, n * sizeof(*v));
    qsort(v, n, sizeof(*v), by_name);
    if (n == 0)
        fprintf(out, "no serial ports found\n");
    for (size_t i = 0; i < n; i++)
        print_one(out, &v[i], link_dirs);
    free(v);
    fprintf(out, "\nConfigure a port by its /dev/serial/by-id/ name: it stays the same whatever "
                 "order adapters are\nplugged in. Pseudo terminals (socat, ser2net) are not "
                 "listed: give their path.\n");
    return ferror(out) ? -EIO : 0;
}

static void describe(struct sp_port *sp, struct mt_port_info *p)
{
    p->name = sp_get_port_name(sp);
    p->description = sp_get_port_description(sp);
    if (sp_get_port_transport(sp) != SP_TRANSPORT_USB)
        return;
    p->usb = 1;
    if (sp_get_port_usb_vid_pid(sp, &p->vid, &p->pid) != SP_OK)
        p->vid = p->pid = 0;
    p->manufacturer = sp_get_port_usb_manufacturer(sp);
    p->product = sp_get_port_usb_product(sp);
    p->serial = sp_get_port_usb_serial(sp);
}

int mt_ports_print(FILE *out)
{
    struct sp_port **list;
    struct mt_port_info *v;
    size_t n = 0;
    int rc;

    if (sp_list_ports(&list) != SP_OK)
        return -EIO;
    while (list[n])
        n++;
    v = calloc(n ? n : 1, sizeof(*v));
    if (!v) {
        sp_free_port_list(list);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        describe(list[i], &v[i]);
    rc = mt_ports_print_list(out, v, n, stable_dirs);
    free(v);
    sp_free_port_list(list);
    return rc;
}
