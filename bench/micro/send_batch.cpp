// send_batch: what a paced loopback send to one client costs the sending thread, written
// either with one sendmsg per client or with one io_uring submission carrying a whole turn's
// sends. It measures, before the server is changed, whether submitting a drain turn's writes
// together would pay: each turn sends one message to each of the next --per-turn clients,
// --turns-per-second times a second, as a shard's turn writes to the clients it delivered to.
//
//   send_batch --mode sendmsg|uring --per-turn K --turns-per-second R [--seconds S]
//
// The sender runs on CPU 0 and a reader that drains every client socket on CPU 1, as
// bench/run.sh pins the server and loadgen. Prints one JSON line: the sender thread's CPU
// (user + system) per message sent. bench/send_batch.sh alternates the modes.
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr unsigned kRingEntries = 256;  // a turn of more sends is submitted in parts

struct Options {
    std::string mode = "sendmsg";
    int clients = 1000;
    int per_turn = 10;
    double turns_per_second = 1000;
    double seconds = 5;
    int size = 260;  // a 256 B message with its WebSocket header
};

void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string(what) + " failed");
}

void pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

double thread_cpu_seconds() {
    rusage usage{};
    getrusage(RUSAGE_THREAD, &usage);
    return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
           static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// Connected pairs on 127.0.0.1: the server ends to send on, the client ends to read.
struct Pairs {
    std::vector<int> servers;
    std::vector<int> clients;

    explicit Pairs(int count) {
        const int listener = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof address;
        check(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0, "bind");
        check(getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) == 0,
              "getsockname");
        check(listen(listener, count) == 0, "listen");
        for (int i = 0; i < count; ++i) {
            const int client = socket(AF_INET, SOCK_STREAM, 0);
            check(connect(client, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0,
                  "connect (ulimit -n must exceed twice --clients)");
            const int server = accept(listener, nullptr, nullptr);
            check(server >= 0, "accept");
            const int one = 1;
            setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            fcntl(server, F_SETFL, O_NONBLOCK);
            fcntl(client, F_SETFL, O_NONBLOCK);
            servers.push_back(server);
            clients.push_back(client);
        }
        close(listener);
    }
};

// Reads every client socket until stopped, as loadgen's clients would.
void read_all(const std::vector<int>& clients, const std::atomic<bool>& stop) {
    pin_to(1);
    const int poller = epoll_create1(0);
    for (const int fd : clients) {
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.fd = fd;
        epoll_ctl(poller, EPOLL_CTL_ADD, fd, &event);
    }
    std::array<char, 65536> buffer;
    std::array<epoll_event, 256> ready;
    while (!stop.load()) {
        const int n = epoll_wait(poller, ready.data(), static_cast<int>(ready.size()), 100);
        for (int i = 0; i < n; ++i) {
            while (read(ready[i].data.fd, buffer.data(), buffer.size()) > 0) {
            }
        }
    }
    close(poller);
}

// One turn's sends, one system call each. Returns the messages the kernel took whole.
long send_each(const std::vector<int>& fds, iovec message) {
    long sent = 0;
    for (const int fd : fds) {
        msghdr header{};
        header.msg_iov = &message;
        header.msg_iovlen = 1;
        sent += sendmsg(fd, &header, MSG_NOSIGNAL) == static_cast<ssize_t>(message.iov_len);
    }
    return sent;
}

// The same sends as one submission per kRingEntries. MSG_DONTWAIT: a full socket completes at
// once with -EAGAIN instead of waiting, so every completion is there when submit returns.
long send_submitted(io_uring& ring,
                    std::array<msghdr, kRingEntries>& headers,
                    const std::vector<int>& fds,
                    iovec& message) {
    long sent = 0;
    for (std::size_t begin = 0; begin < fds.size(); begin += kRingEntries) {
        const std::size_t end = std::min(fds.size(), begin + kRingEntries);
        for (std::size_t i = begin; i < end; ++i) {
            msghdr& header = headers[i - begin];
            header = msghdr{};
            header.msg_iov = &message;
            header.msg_iovlen = 1;
            io_uring_prep_sendmsg(io_uring_get_sqe(&ring), fds[i], &header,
                                  MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        io_uring_submit_and_wait(&ring, static_cast<unsigned>(end - begin));
        io_uring_cqe* completion = nullptr;
        unsigned head = 0;
        unsigned seen = 0;
        io_uring_for_each_cqe(&ring, head, completion) {
            sent += completion->res == static_cast<int>(message.iov_len);
            ++seen;
        }
        io_uring_cq_advance(&ring, seen);
    }
    return sent;
}

// Exits with this when the kernel refuses io_uring (a seccomp profile may): skipped, not failed.
constexpr int kNoIoUring = 77;

int run(const Options& options) {
    io_uring ring{};
    if (const int error = io_uring_queue_init(kRingEntries, &ring, 0); error < 0) {
        std::fprintf(stderr, "send_batch: io_uring unavailable: %s\n", std::strerror(-error));
        return kNoIoUring;
    }
    Pairs pairs(options.clients);
    std::atomic<bool> stop{false};
    std::thread reader(read_all, std::cref(pairs.clients), std::cref(stop));
    pin_to(0);
    std::vector<char> bytes(static_cast<std::size_t>(options.size), 'x');
    iovec message{bytes.data(), bytes.size()};
    const bool submitted = options.mode == "uring";
    const auto turns = static_cast<long>(options.turns_per_second * options.seconds);
    const auto period = std::chrono::duration<double>(1.0 / options.turns_per_second);
    std::vector<int> targets(static_cast<std::size_t>(options.per_turn));
    std::array<msghdr, kRingEntries> headers{};
    std::size_t next = 0;
    long sent = 0;
    const double cpu_before = thread_cpu_seconds();
    const auto start = std::chrono::steady_clock::now();
    for (long turn = 0; turn < turns; ++turn) {
        std::this_thread::sleep_until(
            start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        period * static_cast<double>(turn)));
        for (int& fd : targets) {
            fd = pairs.servers[next];
            next = (next + 1) % pairs.servers.size();
        }
        sent += submitted ? send_submitted(ring, headers, targets, message)
                          : send_each(targets, message);
    }
    const double cpu = thread_cpu_seconds() - cpu_before;
    stop.store(true);
    reader.join();
    io_uring_queue_exit(&ring);
    std::printf(
        "{\"mode\":\"%s\",\"per_turn\":%d,\"turns_per_second\":%.0f,\"sent\":%ld,"
        "\"attempted\":%ld,\"sender_cpu_us_per_message\":%.3f}\n",
        options.mode.c_str(), options.per_turn, options.turns_per_second, sent,
        turns * options.per_turn, sent > 0 ? cpu * 1e6 / static_cast<double>(sent) : 0.0);
    return sent == turns * options.per_turn ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    CLI::App app{"send_batch: a turn's loopback sends, one system call each or one submission"};
    app.add_option("--mode", options.mode, "sendmsg | uring")
        ->check(CLI::IsMember({"sendmsg", "uring"}));
    app.add_option("--clients", options.clients, "connected pairs; the turns go round them")
        ->check(CLI::Range(1, 100000));
    app.add_option("--per-turn", options.per_turn, "clients sent to per turn")
        ->check(CLI::Range(1, 100000));
    app.add_option("--turns-per-second", options.turns_per_second, "turns per second")
        ->check(CLI::Range(1.0, 1e6));
    app.add_option("--seconds", options.seconds, "seconds of sending")
        ->check(CLI::Range(0.1, 600.0));
    CLI11_PARSE(app, argc, argv);
    if (options.per_turn > options.clients) {
        std::fprintf(stderr, "send_batch: --per-turn is more than --clients\n");
        return 2;
    }
    try {
        return run(options);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "send_batch: %s\n", e.what());
        return 1;
    }
    return 0;
}
