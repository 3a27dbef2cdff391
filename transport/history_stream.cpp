#include "transport/history_stream.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <random>

#include "transport/bus_message.hpp"
#include "transport/protocol_v1.hpp"

namespace shardcast::transport {
namespace {

// How long a request to the stream may take: a check, a store's acknowledgement, a read.
constexpr std::int64_t kRequestWaitMs = 2'000;
// The stream is checked this often while it answers, and this often while it does not.
constexpr std::chrono::seconds kCheckWhileAvailable{5};
constexpr std::chrono::milliseconds kCheckWhileUnavailable{1'000};
// Stores awaiting their acknowledgement; past it a store waits up to kStallWaitMs, then fails.
constexpr std::int64_t kMaxPendingStores = 65'536;
constexpr std::int64_t kStallWaitMs = 200;

std::string name_for(const ClusterConfig& cluster) {
    if (!cluster.history.stream.empty()) {
        return cluster.history.stream;
    }
    std::string name = cluster.subject_prefix + "_history";
    std::replace(name.begin(), name.end(), '.', '_');
    return name;
}

std::string hex(std::uint64_t value) {
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
    return text;
}

std::string new_marker() {
    std::random_device random;
    return hex((std::uint64_t{random()} << 32) | random()).substr(8);
}

std::string describe(natsStatus status, jsErrCode code) {
    std::string text = natsStatus_GetText(status);
    if (code != 0) {
        text += " (JetStream error " + std::to_string(code) + ")";
    }
    return text;
}

jsOptions request_options() {
    jsOptions options;
    jsOptions_Init(&options);
    options.Wait = kRequestWaitMs;
    return options;
}

// A client's epoch, split: the stream's creation and the marker.
std::pair<std::string_view, std::string_view> parts_of(std::string_view epoch) {
    const std::size_t dot = epoch.rfind('.');
    if (dot == std::string_view::npos) {
        return {epoch, {}};
    }
    return {epoch.substr(0, dot), epoch.substr(dot + 1)};
}

}  // namespace

// What one resume reads back, subject by subject.
struct HistoryStream::Replay {
    std::vector<dispatcher::ResumeResult::Entry> entries;
    std::uint64_t first = 0;  // the first sequence read for the subject
    std::size_t count = 0;    // read for the subject
    bool failed = false;
};

HistoryStream::HistoryStream(const ClusterConfig& cluster,
                             const dispatcher::HistoryConfig& limits,
                             const Subjects& subjects,
                             dispatcher::Dispatcher& dispatcher,
                             HistoryStreamStats& stats,
                             Relay relay)
    : name_(name_for(cluster)),
      config_(cluster.history),
      limits_(limits),
      subjects_(subjects),
      dispatcher_(dispatcher),
      stats_(stats),
      relay_(std::move(relay)) {
    stats_.enabled.store(true);
}

HistoryStream::~HistoryStream() { stop(); }

void HistoryStream::start(natsConnection* connection) {
    connection_ = connection;
    jsOptions options = request_options();
    options.PublishAsync.MaxPending = kMaxPendingStores;
    options.PublishAsync.StallWait = kStallWaitMs;
    options.PublishAsync.AckHandler = &HistoryStream::on_ack;
    options.PublishAsync.AckHandlerClosure = this;
    const natsStatus status = natsConnection_JetStream(&js_, connection, &options);
    if (status != NATS_OK) {
        throw std::runtime_error(std::string("cluster: cannot create a JetStream context: ") +
                                 natsStatus_GetText(status));
    }
    thread_ = std::thread([this] { run(); });
}

void HistoryStream::stop() {
    if (js_ == nullptr) {
        return;
    }
    jsPubOptions options;
    jsPubOptions_Init(&options);
    options.MaxWait = kRequestWaitMs;
    js_PublishAsyncComplete(js_, &options);
    stopping_.store(true, std::memory_order_release);
    if (thread_.joinable()) {
        thread_.join();
    }
    jsCtx_Destroy(js_);
    js_ = nullptr;
}

// The history thread: resumes in the order asked, and the stream checked between them.
void HistoryStream::run() {
    auto next_check = std::chrono::steady_clock::now();
    for (;;) {
        HistoryFetch request;
        if (fetches_.wait_dequeue_timed(request, std::chrono::milliseconds{100})) {
            answer(request);
        } else if (stopping_.load(std::memory_order_acquire)) {
            return;
        }
        const auto now = std::chrono::steady_clock::now();
        if (now >= next_check || check_now_.exchange(false, std::memory_order_acq_rel)) {
            check();
            next_check = now + (available_.load() ? std::chrono::milliseconds(kCheckWhileAvailable)
                                                  : kCheckWhileUnavailable);
        }
    }
}

// The stream exists (created if missing), and the epoch is known: a new marker is written
// when none is there yet, or after a message went unstored.
void HistoryStream::check() {
    std::int64_t created = 0;
    if (!ensure_stream(created)) {
        return;
    }
    std::string marker;
    std::uint64_t sequence = 0;
    if (!read_marker(marker, sequence)) {
        return;
    }
    const bool broken = broken_.exchange(false);
    if ((marker.empty() || broken) && !write_marker(marker, sequence)) {
        broken_.store(true);
        return;
    }
    set_epoch(hex(static_cast<std::uint64_t>(created)), std::move(marker), sequence);
    if (!available_.exchange(true)) {
        warned_.store(false);
        stats_.available.store(true);
        spdlog::info("cluster: history stream {} available, epoch {}", name_, *epoch());
    }
}

bool HistoryStream::ensure_stream(std::int64_t& created) {
    jsOptions options = request_options();
    jsStreamInfo* info = nullptr;
    jsErrCode code{};
    natsStatus status = js_GetStreamInfo(&info, js_, name_.c_str(), &options, &code);
    if (status == NATS_NOT_FOUND || code == JSStreamNotFoundErr) {
        const std::string clients = subjects_.history_clients();
        const char* subjects[] = {clients.c_str(), subjects_.history_broadcast().c_str(),
                                  subjects_.history_epoch().c_str()};
        jsStreamConfig stream;
        jsStreamConfig_Init(&stream);
        stream.Name = name_.c_str();
        stream.Subjects = subjects;
        stream.SubjectsLen = 3;
        stream.MaxMsgsPerSubject = static_cast<std::int64_t>(limits_.size);
        stream.MaxAge = std::chrono::nanoseconds(limits_.ttl).count();
        stream.MaxBytes =
            limits_.max_bytes == 0 ? -1 : static_cast<std::int64_t>(limits_.max_bytes);
        stream.Storage = config_.memory ? js_MemoryStorage : js_FileStorage;
        stream.Replicas = config_.replicas;
        stream.Discard = js_DiscardOld;
        stream.AllowDirect = true;
        jsRePublish republish;
        jsRePublish_Init(&republish);
        republish.Source = subjects_.history_all().c_str();
        republish.Destination = subjects_.stored_all().c_str();
        stream.RePublish = &republish;
        code = {};
        status = js_AddStream(&info, js_, &stream, &options, &code);
        if (status == NATS_OK) {
            spdlog::info("cluster: created the history stream {}", name_);
        }
    }
    if (status != NATS_OK) {
        set_unavailable(describe(status, code));
        return false;
    }
    created = info->Created;
    const bool usable = info->Config->AllowDirect && republishes(*info->Config);
    jsStreamInfo_Destroy(info);
    if (!usable) {
        set_unavailable("the stream exists without allow_direct or without republishing " +
                        subjects_.history_all() + " to " + subjects_.stored_all() +
                        "; delete it (nats stream rm " + name_ + ") and shardcast recreates it");
    }
    return usable;
}

// Live delivery comes from the stream's republished copies: without them nothing arrives.
bool HistoryStream::republishes(const jsStreamConfig& stream) const {
    const jsRePublish* republish = stream.RePublish;
    return republish != nullptr && republish->Source != nullptr &&
           republish->Destination != nullptr && !republish->HeadersOnly &&
           republish->Source == subjects_.history_all() &&
           republish->Destination == subjects_.stored_all();
}

bool HistoryStream::read_marker(std::string& marker, std::uint64_t& sequence) {
    jsOptions options = request_options();
    jsDirectGetMsgOptions last;
    jsDirectGetMsgOptions_Init(&last);
    last.LastBySubject = subjects_.history_epoch().c_str();
    natsMsg* message = nullptr;
    const natsStatus status = js_DirectGetMsg(&message, js_, name_.c_str(), &options, &last);
    if (status == NATS_NOT_FOUND) {
        marker.clear();
        return true;
    }
    if (status != NATS_OK) {
        set_unavailable(describe(status, {}));
        return false;
    }
    marker.assign(data_of(message));
    const auto text = header_of(message, header::kStreamSequence).value_or("");
    std::from_chars(text.data(), text.data() + text.size(), sequence);
    natsMsg_Destroy(message);
    if (!v1::valid_epoch(marker)) {
        marker.clear();  // not one of ours: write a new one
    }
    return true;
}

bool HistoryStream::write_marker(std::string& marker, std::uint64_t& sequence) {
    std::string fresh = new_marker();
    jsPubOptions options;
    jsPubOptions_Init(&options);
    options.MaxWait = kRequestWaitMs;
    jsPubAck* ack = nullptr;
    jsErrCode code{};
    const natsStatus status = js_Publish(&ack, js_, subjects_.history_epoch().c_str(), fresh.data(),
                                         static_cast<int>(fresh.size()), &options, &code);
    if (status != NATS_OK) {
        set_unavailable(describe(status, code));
        return false;
    }
    sequence = ack->Sequence;
    jsPubAck_Destroy(ack);
    stats_.epochs.add();
    marker = std::move(fresh);
    return true;
}

void HistoryStream::set_epoch(std::string created, std::string marker, std::uint64_t sequence) {
    auto epoch = std::make_shared<const std::string>(created + "." + marker);
    std::lock_guard lock(epoch_mutex_);
    // Two nodes may each write a marker after one outage: the later one holds for all.
    if (sequence < marker_sequence_) {
        return;
    }
    marker_sequence_ = sequence;
    if (epoch_ && *epoch_ == *epoch) {
        return;
    }
    created_ = std::move(created);
    marker_ = std::move(marker);
    stats_.set_epoch(*epoch);
    epoch_ = std::move(epoch);
}

dispatcher::Epoch HistoryStream::epoch() const {
    std::lock_guard lock(epoch_mutex_);
    return epoch_;
}

void HistoryStream::set_unavailable(std::string_view why) {
    stats_.available.store(false);
    // Once when it goes away, and once at startup when it never came: not at every check.
    const bool was_available = available_.exchange(false);
    if (was_available || !warned_.exchange(true)) {
        spdlog::warn(
            "cluster: history stream {} unavailable ({}); live delivery goes on, messages are not "
            "stored and resumes report a gap until it is back",
            name_, why);
    }
}

void HistoryStream::on_marker(std::string_view marker, std::uint64_t sequence) {
    if (!v1::valid_epoch(marker)) {
        return;
    }
    std::string created;
    {
        std::lock_guard lock(epoch_mutex_);
        if (created_.empty()) {
            return;  // this node's own check sets the first epoch
        }
        created = created_;
    }
    set_epoch(std::move(created), std::string(marker), sequence);
}

void HistoryStream::on_broken() { broken_.store(true); }

void HistoryStream::skipped() {
    mark_broken();
    stats_.unstored.add();
}

void HistoryStream::mark_broken() {
    if (broken_.exchange(true)) {
        return;
    }
    // The other nodes must not answer resumes as whole either: tell them, over core NATS.
    natsConnection_Publish(connection_, subjects_.history_broken().c_str(), nullptr, 0);
}

void HistoryStream::store(natsMsg* message) {
    if (!available_.load(std::memory_order_acquire)) {
        return unstored(message);
    }
    jsPubOptions options;
    jsPubOptions_Init(&options);
    options.MaxWait = kRequestWaitMs;
    if (js_PublishMsgAsync(js_, &message, &options) != NATS_OK) {
        unstored(message);  // not taken: still ours
    }
}

void HistoryStream::unstored(natsMsg* message) {
    mark_broken();
    stats_.unstored.add();
    relay_(message);
    natsMsg_Destroy(message);
}

void HistoryStream::on_ack(
    jsCtx*, natsMsg* message, jsPubAck* ack, jsPubAckErr* error, void* self) {
    auto& stream = *static_cast<HistoryStream*>(self);
    if (ack != nullptr) {
        stream.stats_.stored.add();  // delivered from its republished copy
        natsMsg_Destroy(message);
        return;
    }
    if (stream.available_.load()) {
        spdlog::warn("cluster: the history stream did not store a message: {}",
                     error != nullptr ? describe(error->Err, error->ErrCode) : "no answer");
    }
    stream.set_unavailable("a store failed");
    stream.recheck();
    stream.unstored(message);
}

// The resume: what the stream holds for the client after since, its broadcasts included,
// in sequence order, behind a gap when some may be missing.
void HistoryStream::answer(const HistoryFetch& request) {
    auto result = std::make_unique<dispatcher::ResumeResult>();
    result->session = request.session;
    result->since = request.since;
    result->epoch = request.epoch;
    stats_.fetches.add();
    std::uint64_t first = 0;
    std::uint64_t last = 0;
    if (stream_bounds(first, last)) {
        read_replay(request, first, last, *result);
    } else {
        result->gap = dispatcher::GapReason::unavailable;
    }
    dispatcher_.resumed(request.shard, request.client_id, std::move(result));
}

// The sequences the stream holds now, when it answers.
bool HistoryStream::stream_bounds(std::uint64_t& first, std::uint64_t& last) {
    if (!available_.load()) {
        return false;  // known to be down: not an error of this lookup
    }
    jsOptions options = request_options();
    jsStreamInfo* info = nullptr;
    if (js_GetStreamInfo(&info, js_, name_.c_str(), &options, nullptr) != NATS_OK) {
        stats_.fetch_errors.add();
        return false;
    }
    first = info->State.FirstSeq;
    last = info->State.LastSeq;
    jsStreamInfo_Destroy(info);
    return true;
}

// Where the replay starts, and the gap when the client's position is not whole here.
std::uint64_t HistoryStream::resume_point(const HistoryFetch& request,
                                          std::uint64_t first,
                                          std::uint64_t last,
                                          dispatcher::ResumeResult& result) const {
    const auto [created, marker] = parts_of(request.epoch);
    std::lock_guard lock(epoch_mutex_);
    if (created != created_ || request.since > last) {
        result.gap = dispatcher::GapReason::epoch;  // another stream: all this one holds
        return 0;
    }
    // Before the marker some message went unstored (or the stream was new).
    if (marker != marker_ || broken_.load() || request.since < marker_sequence_) {
        result.gap = dispatcher::GapReason::unavailable;
    } else if (request.since + 1 < first) {
        result.gap = dispatcher::GapReason::expired;
    }
    return request.since;
}

void HistoryStream::read_replay(const HistoryFetch& request,
                                std::uint64_t first,
                                std::uint64_t last,
                                dispatcher::ResumeResult& result) {
    const std::uint64_t after = resume_point(request, first, last, result);
    Replay own;
    Replay broadcasts;
    const bool read =
        fetch_subject(subjects_.history_client(request.client_id), {}, after, last, own) &&
        fetch_subject(subjects_.history_broadcast(), request.client_id, after, last, broadcasts);
    if (read) {
        result.through = {last, epoch()};
    } else {
        stats_.fetch_errors.add();
        result.gap = dispatcher::GapReason::unavailable;
    }
    // A subject at its history.size may have lost messages after since to newer ones.
    for (const Replay* replay : {&own, &broadcasts}) {
        if (!result.gap && replay->count >= limits_.size && replay->first > after + 1) {
            result.gap = dispatcher::GapReason::evicted;
        }
    }
    auto& entries = result.entries;
    entries = std::move(own.entries);
    const auto middle = static_cast<std::ptrdiff_t>(entries.size());
    entries.insert(entries.end(), std::make_move_iterator(broadcasts.entries.begin()),
                   std::make_move_iterator(broadcasts.entries.end()));
    std::inplace_merge(
        entries.begin(), entries.begin() + middle, entries.end(),
        [](const auto& a, const auto& b) { return a.position.offset < b.position.offset; });
}

// Reads the subject's messages after `after`, up to `last`, one Direct Get each. A broadcast
// that skips client_id is left out.
bool HistoryStream::fetch_subject(const std::string& subject,
                                  std::string_view client_id,
                                  std::uint64_t after,
                                  std::uint64_t last,
                                  Replay& replay) {
    const dispatcher::Epoch epoch = this->epoch();
    jsOptions options = request_options();
    jsDirectGetMsgOptions next;
    jsDirectGetMsgOptions_Init(&next);
    next.NextBySubject = subject.c_str();
    for (std::uint64_t from = after + 1; from <= last;) {
        next.Sequence = from;
        natsMsg* message = nullptr;
        const natsStatus status = js_DirectGetMsg(&message, js_, name_.c_str(), &options, &next);
        if (status == NATS_NOT_FOUND) {
            return true;
        }
        if (status != NATS_OK) {
            return false;
        }
        std::uint64_t sequence = 0;
        const auto text = header_of(message, header::kStreamSequence).value_or("");
        std::from_chars(text.data(), text.data() + text.size(), sequence);
        BusReceiveError error{};
        dispatcher::Payload payload = payload_of(message, error);
        const bool skipped = !client_id.empty() && header_of(message, header::kExcept) == client_id;
        natsMsg_Destroy(message);
        if (sequence < from || sequence > last) {
            return sequence >= from;  // past the end; a wrong sequence is a failed read
        }
        if (replay.count++ == 0) {
            replay.first = sequence;
        }
        if (payload && !skipped) {
            replay.entries.push_back({{sequence, epoch}, std::move(payload)});
        }
        from = sequence + 1;
    }
    return true;
}

}  // namespace shardcast::transport
