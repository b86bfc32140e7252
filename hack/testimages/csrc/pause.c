/*
 * pause: the infra process of a pod sandbox, as in Kubernetes' pause image.
 *
 * It holds the pod's namespaces open and, as PID 1 of a shared PID
 * namespace, reaps the orphans reparented to it. It sleeps until SIGINT or
 * SIGTERM (a PID 1 ignores signals it has no handler for, so both need one).
 * VERSION is set at compile time so that pause:3.9 and pause:3.10 are
 * different images, as upstream: critest's "same image from two registries"
 * spec expects exactly two names on pause:3.9, which a shared image ID with
 * the sandbox image would break.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION "HEAD"
#endif

static void sigdown(int signo)
{
	static const char msg[] = "Shutting down, got signal\n";

	(void)signo;
	/* write(2) is async-signal-safe; psignal(3) is not. */
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* nothing to do: we are leaving anyway */
	}
	_exit(0);
}

static void sigreap(int signo)
{
	(void)signo;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(int argc, char **argv)
{
	struct sigaction down = { .sa_handler = sigdown };
	struct sigaction reap = { .sa_handler = sigreap, .sa_flags = SA_NOCLDSTOP };
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcasecmp(argv[i], "-v")) {
			printf("pause.c %s\n", VERSION);
			return 0;
		}
	}

	if (getpid() != 1)
		fprintf(stderr, "Warning: pause should be the first process\n");

	if (sigaction(SIGINT, &down, NULL) < 0)
		return 1;
	if (sigaction(SIGTERM, &down, NULL) < 0)
		return 2;
	if (sigaction(SIGCHLD, &reap, NULL) < 0)
		return 3;

	for (;;)
		pause();
	fprintf(stderr, "Error: infinite loop terminated\n");
	return 42;
}
