/*
 * nnp: the program of Kubernetes' nonewprivs test image.
 *
 * Installed setuid root, it prints its effective uid: 0 when the runtime
 * let the setuid bit take effect, the caller's uid when no_new_privs kept
 * it from doing so. A shell applet cannot do this job because busybox
 * drops setuid privileges itself.
 */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	printf("Effective uid: %d\n", (int)geteuid());
	return 0;
}
