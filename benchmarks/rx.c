/* Benchmark receiver: UDP sockets on the given ports, drained with recvmmsg.
 * Args: PORT:TAG ... (TAG "*" accepts any tag). A datagram counts as ok when the 3 bytes at
 * payload offset 20 equal the port's TAG, else bad. SIGUSR1 prints a JSON line of the
 * counts (with a CLOCK_MONOTONIC timestamp); SIGTERM prints one and exits. */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#define MAXP 16
#define BATCH 64
static volatile sig_atomic_t want_print, want_exit;
static void on_usr1(int s) { (void)s; want_print = 1; }
static void on_term(int s) { (void)s; want_exit = 1; }

static int nports, fds[MAXP], ports[MAXP];
static char tags[MAXP][4];
static unsigned long long ok[MAXP], bad[MAXP];

static void print_counts(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	printf("{\"t\": %.6f, \"ports\": {", ts.tv_sec + ts.tv_nsec / 1e9);
	for (int i = 0; i < nports; i++)
		printf("%s\"%d\": [%llu, %llu]", i ? ", " : "", ports[i], ok[i], bad[i]);
	printf("}}\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static char bufs[BATCH][2048];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct epoll_event ev, evs[MAXP];
	int ep = epoll_create1(0), size = 8 << 20;

	signal(SIGUSR1, on_usr1);
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	for (int i = 1; i < argc && nports < MAXP; i++, nports++) {
		struct sockaddr_in a = {.sin_family = AF_INET};
		char *colon = strchr(argv[i], ':');
		ports[nports] = atoi(argv[i]);
		snprintf(tags[nports], 4, "%s", colon ? colon + 1 : "*");
		fds[nports] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
		setsockopt(fds[nports], SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
		a.sin_port = htons(ports[nports]);
		if (bind(fds[nports], (struct sockaddr *)&a, sizeof(a))) {
			perror("bind");
			return 1;
		}
		ev.events = EPOLLIN;
		ev.data.u32 = nports;
		epoll_ctl(ep, EPOLL_CTL_ADD, fds[nports], &ev);
	}
	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = sizeof(bufs[i]);
		memset(&msgs[i], 0, sizeof(msgs[i]));
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	printf("{\"ready\": true}\n");
	fflush(stdout);
	while (!want_exit) {
		int n = epoll_wait(ep, evs, MAXP, 50);
		for (int e = 0; e < n; e++) {
			int p = evs[e].data.u32, got;
			while ((got = recvmmsg(fds[p], msgs, BATCH, MSG_DONTWAIT, NULL)) > 0) {
				for (int m = 0; m < got; m++) {
					int match = tags[p][0] == '*' ||
						    (msgs[m].msg_len >= 23 && !memcmp(bufs[m] + 20, tags[p], 3));
					if (match)
						ok[p]++;
					else
						bad[p]++;
				}
			}
		}
		if (want_print) {
			want_print = 0;
			print_counts();
		}
	}
	print_counts();
	return 0;
}
