/* The benchmark's job program, in the busybox test image (static, no libc
 * needed there). Two modes:
 *   benchtool lines BYTES   numbered lines (~100 bytes each) up to BYTES,
 *                           written in 64 KiB blocks: a job printing at full speed
 *   benchtool ticks N MS    after 1 s, N lines "tick I UNIX_NANOS", one every MS
 *                           milliseconds, each flushed at once: a live-tail probe
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int lines(unsigned long long bytes) {
    static char buf[1 << 16];
    static const char pad[] = "the quick brown fox jumps over the lazy dog while the build log grows and grows";
    size_t used = 0;
    unsigned long long written = 0, n = 0;
    setvbuf(stdout, NULL, _IONBF, 0);
    while (written < bytes) {
        int len = snprintf(buf + used, sizeof buf - used, "line %012llu %s\n", ++n, pad);
        used += (size_t)len;
        written += (unsigned long long)len;
        if (sizeof buf - used < 200 || written >= bytes) {
            if (fwrite(buf, 1, used, stdout) != used) return 1;
            used = 0;
        }
    }
    return 0;
}

static int ticks(long count, long ms) {
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L}, start = {1, 0}, now;
    nanosleep(&start, NULL);
    for (long i = 0; i < count; i++) {
        clock_gettime(CLOCK_REALTIME, &now);
        printf("tick %ld %lld%09ld\n", i, (long long)now.tv_sec, now.tv_nsec);
        fflush(stdout);
        nanosleep(&pause, NULL);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "lines") == 0) return lines(strtoull(argv[2], NULL, 10));
    if (argc == 4 && strcmp(argv[1], "ticks") == 0) return ticks(atol(argv[2]), atol(argv[3]));
    fprintf(stderr, "usage: benchtool lines BYTES | benchtool ticks N MS\n");
    return 2;
}
