/*
 * isolate_child: the process of an isolated input, `mittari __isolate
 * NAME`, started by the agent (isolate.h) with its data socket on fd 3 and
 * its control socket on fd 4 (isowire.h).
 *
 * It reads INIT (the plugin file, the instance, the option values the agent
 * validated), loads the same plugin file (refused if it changed on disk
 * since the agent loaded it: a new file needs a restart of the agent, as
 * for any plugin), and runs the instance with input.c on a libuv loop of
 * its own: timers, fd watches, polls on its own workers and decoders all
 * live here. input.c's sink sends emit, set_health and count to the agent;
 * its log lines go there too (diag's sink). An emit waits for the agent's
 * answer, one request at a time on the data socket (a lock), from any
 * thread. A fatal signal in plugin code is reported to the agent (crash.h)
 * and ends the process with MT_EXIT_PLUGIN.
 *
 * It ends after STOP (the plugin stopped and destroyed, STOPPED sent), when
 * the agent's end of the control socket closes, or with the agent
 * (PR_SET_PDEATHSIG). SIGINT, SIGTERM and SIGHUP are ignored: the agent
 * decides when it stops. It closes every descriptor it inherited beyond
 * its two sockets, and is not dumpable (its memory holds raw identifiers
 * on their way to the agent).
 */
#ifndef MT_ISOLATE_CHILD_H
#define MT_ISOLATE_CHILD_H

#define MT_ISOLATE_DATA_FD 3
#define MT_ISOLATE_CTL_FD 4

/* main() of the child: argv[1] is "__isolate". Returns the exit status. */
int mt_isolate_child_main(int argc, char **argv);

#endif
