/*
 * crid-pause: crid's built-in pod infra process, so that a pod sharing one
 * PID namespace needs no pause image and no registry.
 *
 * It does what Kubernetes' pause does: it holds the pod's namespaces while
 * it lives, reaps every orphan reparented to it as PID 1 of the pod's PID
 * namespace, and exits 0 on SIGTERM or SIGINT. It never touches a file.
 *
 * The signals are blocked and taken with sigwaitinfo(2), not handlers: no
 * async-signal-safety to reason about, and a PID 1 (which ignores signals
 * it has no disposition for) still sees SIGTERM, as it is waited for.
 *
 * Built static with gcc -Os by `make build` and run by crid from a
 * read-only rootfs it creates (podsandbox/builtin.go).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION "dev"
#endif

int main(int argc, char **argv)
{
	sigset_t set;
	int sig;

	if (argc > 1 && (!strcmp(argv[1], "-v") || !strcmp(argv[1], "--version"))) {
		printf("crid-pause %s\n", VERSION);
		return 0;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) {
		perror("crid-pause: sigprocmask");
		return 1;
	}
	for (;;) {
		sig = sigwaitinfo(&set, NULL);
		if (sig < 0) {
			if (errno == EINTR)
				continue;
			perror("crid-pause: sigwaitinfo");
			return 2;
		}
		if (sig == SIGTERM || sig == SIGINT)
			return 0;
		/* SIGCHLD: one signal may stand for many exits. */
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
}
