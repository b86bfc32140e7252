/*
 * webserver: a tiny static HTTP server that plays nginx and Apache httpd in
 * the test images critest pulls. The personality comes from the name it is
 * run under (argv[0]): "nginx..." or "httpd...".
 *
 * What critest checks, and how this program satisfies it:
 *  - nginx: PID 1 of a container-private PID namespace must show
 *    "master process" in /proc/1/cmdline, the process must be called nginx
 *    (pidof nginx), and its pid must be in /var/run/nginx.pid. At start the
 *    program re-executes its own binary (a file named nginx, so the kernel
 *    names the process nginx) with argv[0] set to the title real nginx shows,
 *    "nginx: master process nginx -g daemon off;".
 *  - both: answer 200 to GET / on the port of their configuration file
 *    (80, or 12003 in the hostnet image, whose only difference is that file).
 *  - httpd: log a line containing "httpd" to the container log.
 *
 * One process serves connections one at a time: the tests make a handful of
 * requests. As PID 1 it also reaps orphans, and it handles the stop signals
 * itself (a PID 1 ignores signals without a handler): SIGTERM and SIGINT
 * (fast stop), SIGQUIT (nginx graceful stop), SIGWINCH (httpd graceful stop).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct personality {
	const char *name;       /* process and program name */
	const char *conf;       /* file holding the listen port and doc root */
	const char *listen_kw;  /* directive giving the port */
	const char *root_kw;    /* directive giving the document root */
	const char *pidfile;
	const char *version_env; /* image variable holding the version */
	const char *server;     /* Server: header, from version_env */
	const char *version;    /* -v output, from version_env */
	int port;               /* defaults when the file says nothing */
	const char *root;
};

/* Not const: server and version take the image's version variable. */
static struct personality nginx = {
	.name = "nginx",
	.conf = "/etc/nginx/conf.d/default.conf",
	.listen_kw = "listen",
	.root_kw = "root",
	.pidfile = "/var/run/nginx.pid",
	.version_env = "NGINX_VERSION",
	.server = "nginx/1.14.2",
	.version = "nginx version: nginx/1.14.2",
	.port = 80,
	.root = "/usr/share/nginx/html",
};

static struct personality httpd = {
	.name = "httpd",
	.conf = "/usr/local/apache2/conf/httpd.conf",
	.listen_kw = "Listen",
	.root_kw = "DocumentRoot",
	.pidfile = "/usr/local/apache2/logs/httpd.pid",
	.version_env = "HTTPD_VERSION",
	.server = "Apache/2.4.39 (Unix)",
	.version = "Server version: Apache/2.4.39 (Unix)",
	.port = 80,
	.root = "/usr/local/apache2/htdocs",
};

#define NGINX_TITLE_PREFIX "nginx: master process "

static volatile sig_atomic_t stop_signal;

static void on_stop(int signo)
{
	stop_signal = signo;
}

/* on_child only interrupts accept(2); the main loop reaps. */
static void on_child(int signo)
{
	(void)signo;
}

static void reap(void)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

/* httpd_log writes an Apache-style error log line to stderr. */
static void httpd_log(const char *module, const char *fmt, ...)
{
	char stamp[64];
	struct timeval tv;
	struct tm tm;
	va_list ap;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%a %b %d %H:%M:%S", &tm);
	fprintf(stderr, "[%s.%06ld %d] [%s] [pid %d:tid %d] ", stamp,
		(long)tv.tv_usec, tm.tm_year + 1900, module, (int)getpid(),
		(int)getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

/*
 * read_conf takes the first port and document root found in the
 * personality's configuration file ("listen 12003;", "Listen 80",
 * "root /usr/share/nginx/html;", "DocumentRoot "/x""); a missing file
 * keeps the defaults.
 */
static void read_conf(const struct personality *p, int *port, char *root,
		      size_t rootlen)
{
	char line[1024];
	int have_port = 0, have_root = 0;
	FILE *f = fopen(p->conf, "re");

	*port = p->port;
	snprintf(root, rootlen, "%s", p->root);
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char kw[64], arg[PATH_MAX];
		char *colon, *end;

		if (sscanf(line, " %63s %4095s", kw, arg) != 2 || kw[0] == '#')
			continue;
		end = arg + strlen(arg);
		while (end > arg && (end[-1] == ';' || end[-1] == '"'))
			*--end = '\0';
		if (!have_port && !strcmp(kw, p->listen_kw)) {
			colon = strrchr(arg, ':'); /* [::]:80, 0.0.0.0:80 */
			*port = atoi(colon ? colon + 1 : arg);
			have_port = 1;
		} else if (!have_root && !strcmp(kw, p->root_kw)) {
			snprintf(root, rootlen, "%s", arg[0] == '"' ? arg + 1 : arg);
			have_root = 1;
		}
	}
	fclose(f);
}

/* listen_on binds a dual-stack socket, or IPv4 when IPv6 is unavailable. */
static int listen_on(int port)
{
	int one = 1, zero = 0, fd;
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };

	a6.sin6_port = htons(port);
	a4.sin_port = htons(port);
	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		if (bind(fd, (struct sockaddr *)&a6, sizeof(a6)) == 0 && listen(fd, 64) == 0)
			return fd;
		close(fd);
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a4, sizeof(a4)) < 0 || listen(fd, 64) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf += n;
		len -= (size_t)n;
	}
}

static const char *content_type(const char *path)
{
	const char *dot = strrchr(path, '.');

	if (dot && (!strcmp(dot, ".html") || !strcmp(dot, ".htm")))
		return "text/html";
	if (dot && !strcmp(dot, ".txt"))
		return "text/plain";
	return "application/octet-stream";
}

/* load reads a whole regular file (the pages are small) into a malloc'd buffer. */
static char *load(const char *path, size_t *len)
{
	struct stat st;
	char *buf;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (16 << 20)) {
		close(fd);
		return NULL;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return NULL;
	}
	n = read(fd, buf, (size_t)st.st_size);
	close(fd);
	if (n != st.st_size) {
		free(buf);
		return NULL;
	}
	*len = (size_t)n;
	return buf;
}

static void access_log(const struct personality *p, const char *peer,
		       const char *reqline, int status, size_t bytes)
{
	char stamp[64];
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%d/%b/%Y:%H:%M:%S +0000", &tm);
	if (p == &nginx)
		printf("%s - - [%s] \"%s\" %d %zu \"-\" \"-\" \"-\"\n", peer, stamp,
		       reqline, status, bytes);
	else
		printf("%s - - [%s] \"%s\" %d %zu\n", peer, stamp, reqline, status, bytes);
	fflush(stdout);
}

static void serve(const struct personality *p, const char *root, int fd,
		  const char *peer)
{
	static const char not_found[] =
		"<html>\r\n<head><title>404 Not Found</title></head>\r\n"
		"<body>\r\n<center><h1>404 Not Found</h1></center>\r\n</body>\r\n</html>\r\n";
	static const char bad_method[] =
		"<html>\r\n<head><title>405 Not Allowed</title></head>\r\n"
		"<body>\r\n<center><h1>405 Not Allowed</h1></center>\r\n</body>\r\n</html>\r\n";
	char req[8192], method[16], target[4096], path[PATH_MAX + 4096], head[1024];
	const char *body = NULL, *status_text = "200 OK", *ctype = "text/html";
	char *file = NULL, *q, *eol;
	size_t got = 0, len = 0;
	struct timeval tmo = { .tv_sec = 10 };
	int status = 200, n;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo));
	/* Read the request head; the body of a GET, if any, is ignored. */
	while (got < sizeof(req) - 1) {
		ssize_t r = read(fd, req + got, sizeof(req) - 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[got] = '\0';
	if (got == 0)
		return;
	eol = strpbrk(req, "\r\n");
	if (eol)
		*eol = '\0';
	if (sscanf(req, "%15s %4095s", method, target) != 2)
		return;

	q = strpbrk(target, "?#");
	if (q)
		*q = '\0';
	if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
		status = 405;
		status_text = "405 Not Allowed";
		body = bad_method;
		len = sizeof(bad_method) - 1;
	} else {
		struct stat st;

		snprintf(path, sizeof(path), "%s%s%s", root,
			 target[0] == '/' ? "" : "/", target);
		if (path[strlen(path) - 1] == '/' ||
		    (stat(path, &st) == 0 && S_ISDIR(st.st_mode)))
			strncat(path, path[strlen(path) - 1] == '/' ? "index.html" : "/index.html",
				sizeof(path) - strlen(path) - 1);
		if (!strstr(target, ".."))
			file = load(path, &len);
		if (file) {
			body = file;
			ctype = content_type(path);
		} else {
			status = 404;
			status_text = "404 Not Found";
			body = not_found;
			len = sizeof(not_found) - 1;
		}
	}

	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %s\r\nServer: %s\r\nContent-Type: %s\r\n"
		     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
		     status_text, p->server, ctype, len);
	write_all(fd, head, (size_t)n);
	if (strcmp(method, "HEAD"))
		write_all(fd, body, len);
	access_log(p, peer, req, status, len);
	free(file);
}

static void peer_name(const struct sockaddr_storage *ss, char *out, size_t len)
{
	const void *addr = NULL;

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const void *)ss;

		addr = &a6->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
			inet_ntop(AF_INET, &a6->sin6_addr.s6_addr[12], out, len);
			return;
		}
	} else if (ss->ss_family == AF_INET) {
		addr = &((const struct sockaddr_in *)(const void *)ss)->sin_addr;
	}
	if (!addr || !inet_ntop(ss->ss_family, addr, out, len))
		snprintf(out, len, "-");
}

/*
 * retitle re-executes the program as "nginx: master process <args>" so that
 * /proc/<pid>/cmdline reads like real nginx's. The kernel names a process
 * after the file it executes, not argv[0], so the name stays "nginx".
 */
static void retitle(int argc, char **argv)
{
	char exe[PATH_MAX], title[4096];
	char *args[2] = { title, NULL };
	size_t used;
	ssize_t n;
	int i;

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		snprintf(exe, sizeof(exe), "/usr/sbin/nginx");
	else
		exe[n] = '\0';
	used = (size_t)snprintf(title, sizeof(title), "%s%s", NGINX_TITLE_PREFIX, argv[0]);
	for (i = 1; i < argc && used < sizeof(title); i++)
		used += (size_t)snprintf(title + used, sizeof(title) - used, " %s", argv[i]);
	execv(exe, args);
	fprintf(stderr, "nginx: cannot set the process title: exec %s: %s\n", exe,
		strerror(errno));
}

/*
 * set_version names the server after the version variable of the image
 * (NGINX_VERSION=1.14.2 in nginx:1.14, 1.25.0 in hostnet-nginx), as the
 * upstream images, whose binaries match their variables, would.
 */
static void set_version(struct personality *p)
{
	static char server[128], version[160];
	const char *v = getenv(p->version_env);

	if (!v || !*v || strlen(v) > 64)
		return;
	if (p == &nginx) {
		snprintf(server, sizeof(server), "nginx/%s", v);
		snprintf(version, sizeof(version), "nginx version: nginx/%s", v);
	} else {
		snprintf(server, sizeof(server), "Apache/%s (Unix)", v);
		snprintf(version, sizeof(version), "Server version: Apache/%s (Unix)", v);
	}
	p->server = server;
	p->version = version;
}

int main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	struct personality *p;
	struct sigaction stop = { .sa_handler = on_stop };
	struct sigaction child = { .sa_handler = on_child, .sa_flags = SA_NOCLDSTOP };
	char root[PATH_MAX], host[256] = "localhost";
	FILE *pf;
	int i, port, lfd;

	if (!strncmp(base, "nginx", 5))
		p = &nginx;
	else if (!strncmp(base, "httpd", 5))
		p = &httpd;
	else {
		fprintf(stderr, "webserver: run me as nginx or httpd, not %s\n", base);
		return 2;
	}

	set_version(p);
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "-V")) {
			fprintf(p == &nginx ? stderr : stdout, "%s\n", p->version);
			return 0;
		}
		if (p == &nginx && !strcmp(argv[i], "-t")) {
			fprintf(stderr, "nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\n"
					"nginx: configuration file /etc/nginx/nginx.conf test is successful\n");
			return 0;
		}
	}
	if (p == &nginx && strncmp(argv[0], NGINX_TITLE_PREFIX, strlen(NGINX_TITLE_PREFIX)))
		retitle(argc, argv);

	read_conf(p, &port, root, sizeof(root));
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGTERM, &stop, NULL);
	sigaction(SIGINT, &stop, NULL);
	sigaction(SIGQUIT, &stop, NULL);
	if (p == &httpd)
		sigaction(SIGWINCH, &stop, NULL);
	sigaction(SIGCHLD, &child, NULL);

	lfd = listen_on(port);
	if (lfd < 0) {
		fprintf(stderr, "%s: bind() to 0.0.0.0:%d failed (%s)\n", p->name, port,
			strerror(errno));
		return 1;
	}
	pf = fopen(p->pidfile, "we");
	if (pf) {
		fprintf(pf, "%d\n", (int)getpid());
		fclose(pf);
	} else {
		fprintf(stderr, "%s: open() \"%s\" failed (%s)\n", p->name, p->pidfile,
			strerror(errno));
	}
	if (p == &httpd) {
		gethostname(host, sizeof(host) - 1);
		fprintf(stderr, "AH00558: httpd: Could not reliably determine the server's fully "
				"qualified domain name, using %s. Set the 'ServerName' directive "
				"globally to suppress this message\n", host);
		httpd_log("mpm_event:notice", "AH00489: %s configured -- resuming normal operations",
			  p->server);
		httpd_log("core:notice", "AH00094: Command line: 'httpd -D FOREGROUND'");
	}

	while (!stop_signal) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char peer[INET6_ADDRSTRLEN];
		int cfd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);

		reap();
		if (cfd < 0) {
			if (errno != EINTR)
				usleep(10000); /* a transient error: do not spin */
			continue;
		}
		peer_name(&ss, peer, sizeof(peer));
		serve(p, root, cfd, peer);
		close(cfd);
	}

	if (p == &httpd)
		httpd_log("mpm_event:notice", "AH00492: caught %s, shutting down",
			  stop_signal == SIGWINCH ? "SIGWINCH" : "SIGTERM");
	unlink(p->pidfile);
	return 0;
}
