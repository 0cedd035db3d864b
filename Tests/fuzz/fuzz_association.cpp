// Target "association": the bytes a peer sends to the DICOM port, as a TCP stream into the shim's
// SCP (scp.cpp, qr.cpp, send.cpp): A-ASSOCIATE-RQ parsing and negotiation, P-DATA-TF PDVs, DIMSE
// command sets, C-ECHO, C-STORE datasets streamed to the store callbacks bit for bit, C-FIND
// identifiers, C-MOVE/C-GET (one stored instance sent back), C-CANCEL, A-RELEASE, A-ABORT.
// The store callbacks do what the bridge does with a received dataset: File Meta + bytes into a
// file, then the index read and the KOS reader on it (fuzz_common.h).
//
// One real cdcm_scp listens on 127.0.0.1 (an ephemeral port) for the whole run. Each input is
// one connection: the bytes are sent (whatever is answered is read and dropped), the sending side
// is shut down, and the input ends when the server has closed the connection and has no
// association or negotiation left, so a crash is always reported with the input that caused it.
#include "fuzz_common.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

namespace {

cdcm_scp *g_scp = nullptr;
uint16_t g_port = 0;
bool g_trace = false;  // FUZZ_TRACE=1: say which callbacks each input reached (to check the seeds)
#define TRACE(...) do { if (g_trace) fprintf(stderr, "trace: " __VA_ARGS__); } while (0)
std::string g_send_path;  // the instance C-MOVE / C-GET sub-operations send

struct Sink {
    std::vector<uint8_t> bytes;
    std::string ts;
};

fuzz::MemFile &store_file() {
    static fuzz::MemFile f;
    return f;
}
std::mutex g_store_mutex;

cdcm_association_decision on_request(void *, const cdcm_association_info *info) {
    volatile size_t n = strlen(info->calling_ae) + strlen(info->called_ae) + strlen(info->peer_host);
    (void)n;
    TRACE("association requested\n");
    return CDCM_ACCEPT;
}
void on_ended(void *, const cdcm_association_info *, int, const char *reason) {
    volatile size_t n = strlen(reason);
    (void)n;
    TRACE("association ended: %s\n", reason);
}
uint16_t on_echo(void *, const cdcm_association_info *) {
    TRACE("C-ECHO\n");
    return 0;
}

void *store_begin(void *, const cdcm_association_info *, const cdcm_store_request *req, cdcm_status *status) {
    volatile size_t n = strlen(req->sop_class_uid) + strlen(req->sop_instance_uid) +
                        strlen(req->transfer_syntax_uid) + strlen(req->move_originator_ae);
    (void)n;
    if (req->message_id == 0xdead) {  // a refusal path: dataset read and discarded
        status->status = 0xA700;
        return nullptr;
    }
    auto *sink = new Sink();
    sink->ts = req->transfer_syntax_uid;
    return sink;
}
int store_data(void *, void *s, const void *bytes, size_t length) {
    auto *sink = static_cast<Sink *>(s);
    if (sink->bytes.size() + length > (4u << 20)) return 1;  // a write error: rest discarded
    const uint8_t *b = static_cast<const uint8_t *>(bytes);
    sink->bytes.insert(sink->bytes.end(), b, b + length);
    return 0;
}
void store_end(void *, void *s, int received_ok, cdcm_status *status) {
    auto *sink = static_cast<Sink *>(s);
    if (received_ok) {
        // Not the Swift File Meta (the stored target has that): DCMTK reads a bare dataset too.
        TRACE("C-STORE dataset of %zu bytes on %s\n", sink->bytes.size(), sink->ts.c_str());
        std::lock_guard<std::mutex> lock(g_store_mutex);
        fuzz::exercise_file(store_file().write(sink->bytes.data(), sink->bytes.size()));
    }
    status->status = 0;
    delete sink;
}

struct Query {
    int left = 2;
};
void *find_begin(void *, const cdcm_association_info *, const char *sop_class, cdcm_dataset *identifier,
                 cdcm_status *status) {
    volatile size_t n = strlen(sop_class);
    (void)n;
    TRACE("C-FIND\n");
    size_t total = 0;
    cdcm_dataset_for_each(identifier, fuzz::visit_element, &total);
    cdcm_error err;
    for (uint32_t tag : fuzz::kIndexTags) fuzz::read_string(identifier, tag);
    if (cdcm_dataset_convert_to_utf8(identifier, &err) != 0) {
        status->status = 0xA900;
        strcpy(status->error_comment, "bad identifier");
        return nullptr;
    }
    for (uint32_t tag : fuzz::kIndexTags) fuzz::read_string(identifier, tag);
    return new Query();
}
int find_next(void *, void *q, cdcm_dataset *response, cdcm_status *status) {
    auto *query = static_cast<Query *>(q);
    if (query->left-- > 0) {
        cdcm_error err;
        cdcm_dataset_put_string(response, 0x00080052, "STUDY", &err);
        cdcm_dataset_put_string(response, 0x0020000D, "1.2.3.4", &err);
        cdcm_dataset_put_empty(response, 0x00081110, &err);
        return 1;
    }
    status->status = 0;
    return 0;
}
void find_end(void *, void *q, int) { delete static_cast<Query *>(q); }

struct Retrieval {};
void *retrieve_begin(void *, const cdcm_association_info *, const char *sop_class, cdcm_dataset *identifier,
                     const char *move_destination, cdcm_retrieve_destination *destination, size_t *count,
                     cdcm_status *status) {
    volatile size_t n = strlen(sop_class) + (move_destination ? strlen(move_destination) : 0);
    (void)n;
    for (uint32_t tag : fuzz::kIndexTags) fuzz::read_string(identifier, tag);
    TRACE("%s\n", move_destination ? "C-MOVE" : "C-GET");
    if (move_destination) {
        if (std::strcmp(move_destination, "NOWHERE") == 0) {
            status->status = 0xA801;
            return nullptr;
        }
        // A destination that refuses connections: the sub-operation fails at once.
        fuzz::copy(destination->ae_title, sizeof destination->ae_title, move_destination);
        fuzz::copy(destination->host, sizeof destination->host, "127.0.0.1");
        destination->port = 1;
    }
    *count = 1;
    return new Retrieval();
}
int retrieve_item(void *, void *, size_t, cdcm_retrieve_item *item) {
    fuzz::copy(item->path, sizeof item->path, g_send_path.c_str());
    fuzz::copy(item->sop_class_uid, sizeof item->sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    fuzz::copy(item->sop_instance_uid, sizeof item->sop_instance_uid, "1.2.826.0.1.3680043.8.498.3");
    fuzz::copy(item->transfer_syntax_uid, sizeof item->transfer_syntax_uid, "1.2.840.10008.1.2.1");
    return 0;
}
void retrieve_result(void *, void *, size_t, uint16_t status, const char *error) {
    volatile size_t n = error ? strlen(error) : 0;
    (void)n;
    TRACE("sub-operation: status %04x %s\n", status, error ? error : "");
}
void retrieve_end(void *, void *r, const cdcm_retrieve_counts *, int) { delete static_cast<Retrieval *>(r); }

uint16_t listening_port() {
    // The SCP listens on an ephemeral port: find it from the socket DCMTK opened.
    for (int fd = 3; fd < 1024; ++fd) {
        struct sockaddr_in a;
        socklen_t len = sizeof a;
        int listening = 0;
        socklen_t llen = sizeof listening;
        if (getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) != 0 || a.sin_family != AF_INET) continue;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &llen) != 0 || !listening) continue;
        return ntohs(a.sin_port);
    }
    return 0;
}

/// The client side of one input: a connection that sends the input's bytes and reads (and drops)
/// whatever the server answers.
class Client {
  public:
    Client() : deadline_(std::chrono::steady_clock::now() + std::chrono::seconds(20)) {
        fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) abort();
        int one = 1;
        setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct sockaddr_in a = {};
        a.sin_family = AF_INET;
        a.sin_port = htons(g_port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
            perror("connect to the fuzzed SCP");
            abort();
        }
        fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
    }
    ~Client() { close(fd_); }

    /// Sends `size` bytes, reading while the server answers (it may block on a full buffer).
    void send_all(const uint8_t *data, size_t size) {
        size_t sent = 0;
        while (sent < size && !write_closed_ && !closed_) {
            pump(100, true);
            ssize_t n = send(fd_, data + sent, size - sent, MSG_NOSIGNAL);
            if (n > 0) sent += static_cast<size_t>(n);
            else if (n < 0 && errno != EAGAIN && errno != EINTR) write_closed_ = true;  // reset by the server
        }
    }
    /// Waits up to `ms` for the server to answer something (more than it had when last asked).
    void await_answer(int ms) {
        auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
        while (!closed_ && received_ == mark_ && std::chrono::steady_clock::now() < until) pump(1, false);
        mark_ = received_;
    }
    /// Closes the sending side and reads until the server closes the connection.
    void finish() {
        shutdown(fd_, SHUT_WR);
        while (!closed_) pump(100, false);
    }

  private:
    void pump(int ms, bool writing) {
        struct pollfd p = {fd_, static_cast<short>(POLLIN | (writing ? POLLOUT : 0)), 0};
        if (poll(&p, 1, ms) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
            for (;;) {
                ssize_t n = recv(fd_, buf_, sizeof buf_, 0);
                if (n > 0) { received_ += static_cast<size_t>(n); continue; }
                if (n == 0 || (errno != EAGAIN && errno != EINTR)) closed_ = true;
                break;
            }
        }
        if (std::chrono::steady_clock::now() > deadline_) {
            fprintf(stderr, "the SCP did not close the connection within 20 s\n");
            abort();
        }
    }
    int fd_;
    bool closed_ = false, write_closed_ = false;
    size_t received_ = 0, mark_ = 0;
    char buf_[65536];
    std::chrono::steady_clock::time_point deadline_;
};

int g_answer_wait_ms = 20;

/// Does this PDU start a new request: an A-RELEASE-RQ, an A-ABORT, or a P-DATA-TF whose first PDV
/// is a command fragment? Before one, the client waits (briefly) for the answer to what it sent,
/// as a real peer does: else DCMTK finds the next request where it looks for a C-CANCEL-RQ.
bool starts_request(const uint8_t *pdu, size_t size) {
    if (size < 6) return false;
    if (pdu[0] == 0x05 || pdu[0] == 0x07) return true;
    return pdu[0] == 0x04 && size >= 12 && (pdu[11] & 0x01);
}

/// Sends one input on a new connection, PDU by PDU (as framed by their length fields; whatever
/// does not frame is sent as it is), and returns once the server has ended the association.
void exchange(const uint8_t *data, size_t size) {
    {
        Client client;
        size_t off = 0;
        while (off < size) {
            size_t end = size;
            if (size - off >= 6) {
                uint32_t len = (uint32_t(data[off + 2]) << 24) | (uint32_t(data[off + 3]) << 16) |
                               (uint32_t(data[off + 4]) << 8) | data[off + 5];
                if (len <= size - off - 6) end = off + 6 + len;
            }
            if (off > 0 && starts_request(data + off, end - off)) client.await_answer(g_answer_wait_ms);
            client.send_all(data + off, end - off);
            off = end;
        }
        client.finish();
    }
    // The connection is closed on the server's side; wait for its thread to finish the association.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (cdcm_scp_active_associations(g_scp) != 0 || cdcm_scp_negotiating_connections(g_scp) != 0) {
        if (std::chrono::steady_clock::now() > deadline) {
            fprintf(stderr, "an association was still being served 20 s after its connection closed\n");
            abort();
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    cdcm_initialize(5);
    g_trace = getenv("FUZZ_TRACE") != nullptr;
    if (const char *ms = getenv("FUZZ_ANSWER_WAIT_MS")) g_answer_wait_ms = atoi(ms);
    const char *send_path = getenv("FUZZ_SEND_FILE");
    g_send_path = send_path ? send_path : "testdata/ct_explicit_le.dcm";
    cdcm_scp_config config;
    memset(&config, 0, sizeof config);
    config.ae_title = "FUZZ_SCP";
    config.port = 0;
    config.max_pdu = 16384;
    config.max_associations = 4;
    config.acse_timeout_seconds = 5;
    config.dimse_timeout_seconds = 5;
    config.max_retrieve_pdu = 16384;
    config.callbacks = {on_request, on_ended, on_echo, store_begin, store_data, store_end,
                        find_begin, find_next, find_end, retrieve_begin, retrieve_item, retrieve_result, retrieve_end};
    cdcm_error err;
    g_scp = cdcm_scp_create(&config, &err);
    if (!g_scp) {
        fprintf(stderr, "cdcm_scp_create: %s\n", err.text);
        abort();
    }
    g_port = listening_port();
    if (g_port == 0) {
        fprintf(stderr, "cannot find the SCP's listening port\n");
        abort();
    }
    std::thread([] {
        cdcm_error e;
        cdcm_scp_run(g_scp, &e);
    }).detach();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    exchange(data, size);
    return 0;
}
