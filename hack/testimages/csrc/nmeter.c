/*
 * nmeter: the part of busybox's nmeter applet that Kubernetes' e2e specs
 * use, for the e2e busybox image. Debian's busybox builds (dynamic and
 * static) leave the applet out, and the node e2e suite's container
 * lifecycle specs stamp their log lines with
 *
 *	date -u +%FT$(nmeter -d0 '%3t' | head -n1)Z
 *
 * Usage: nmeter [-d MSEC] FORMAT. FORMAT is printed once per MSEC
 * milliseconds (0: without pause; default 1000) until output fails; in it
 * "%t" is the time of day as HH:MM:SS, "%Nt" the same with N (1-6) digits
 * of the second's fraction, "%%" a percent sign. Any other directive, which
 * busybox's nmeter would read from /proc, is refused (exit 2) rather than
 * faked.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int usage(const char *why)
{
	fprintf(stderr, "nmeter: %s\nusage: nmeter [-d MSEC] FORMAT (only %%t and %%Nt are supported)\n", why);
	return 2;
}

/* render writes one line of format for now into out; -1 on a bad directive. */
static int render(const char *format, char *out, size_t size)
{
	struct timeval tv;
	struct tm tm;
	size_t n = 0;
	const char *p;

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	for (p = format; *p && n + 32 < size; p++) {
		int digits = 0;

		if (*p != '%') {
			out[n++] = *p;
			continue;
		}
		p++;
		if (*p == '%') {
			out[n++] = '%';
			continue;
		}
		if (*p >= '1' && *p <= '6') {
			digits = *p - '0';
			p++;
		}
		if (*p != 't')
			return -1;
		n += (size_t)snprintf(out + n, size - n, "%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
		if (digits > 0) {
			long frac = tv.tv_usec;
			int i;

			for (i = 6; i > digits; i--)
				frac /= 10;
			n += (size_t)snprintf(out + n, size - n, ".%0*ld", digits, frac);
		}
	}
	out[n++] = '\n';
	out[n] = '\0';
	return (int)n;
}

int main(int argc, char **argv)
{
	long delay = 1000;
	const char *format;
	char line[512];
	int opt;

	while ((opt = getopt(argc, argv, "d:")) != -1) {
		char *end;

		if (opt != 'd')
			return usage("unknown option");
		errno = 0;
		delay = strtol(optarg, &end, 10);
		if (errno || *end || delay < -1)
			return usage("-d wants milliseconds");
	}
	if (optind != argc - 1)
		return usage("one FORMAT argument is needed");
	format = argv[optind];
	for (;;) {
		int n = render(format, line, sizeof(line));

		if (n < 0)
			return usage("unsupported directive in FORMAT");
		if (write(STDOUT_FILENO, line, (size_t)n) != n)
			return 0;
		if (delay < 0)
			return 0;
		if (delay > 0) {
			struct timespec ts = {delay / 1000, (delay % 1000) * 1000000L};

			nanosleep(&ts, NULL);
		}
	}
}
