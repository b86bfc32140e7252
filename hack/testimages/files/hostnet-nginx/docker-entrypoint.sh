#!/bin/sh
# Entrypoint of the nginx:1.25 image that hostnet-nginx is built on, cut
# down: it logs what upstream logs and execs the command, so that nginx
# stays PID 1 and receives the stop signal (SIGQUIT).
set -e

if [ "$1" = "nginx" ] || [ "$1" = "nginx-debug" ]; then
	echo "$0: Looking for shell scripts in /docker-entrypoint.d/"
	for f in /docker-entrypoint.d/*.sh; do
		[ -x "$f" ] || continue
		echo "$0: Launching $f"
		"$f"
	done
	echo "$0: Configuration complete; ready for start up"
fi

exec "$@"
