/*
 * agentid: the default agent.id, stable and unique per gateway: "mt-" and
 * 16 hex digits of a keyed hash (HMAC-SHA-256, key "mittari agent id") of
 * /etc/machine-id, so the id stays the same across restarts, reinstalls of
 * mittari and host renames, differs between machines (systemd makes the
 * machine id unique per installed system; an image must be prepared with an
 * empty /etc/machine-id, as systemd documents), and does not reveal the
 * machine id itself. Without a readable machine id: the host name (letters,
 * digits, '-', '.' and '_' kept, others become '-').
 *
 * Any thread; reads one small file; never logs.
 */
#ifndef MT_AGENTID_H
#define MT_AGENTID_H

#include <stddef.h>

/* Writes the default id into out (at most 63 characters). */
void mt_agent_default_id(char *out, size_t len);
/* The same from a given machine-id file (tests); 0, or -ENOENT/-EINVAL when
 * the file holds no machine id. */
int mt_agent_id_from(const char *machine_id_path, char *out, size_t len);

#endif
