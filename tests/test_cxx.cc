// C++ under the preloaded allocator: strings, maps, vectors, aligned new, and containers built in one thread and
// destroyed in another. Prints a checksum that real_cxx.sh compares with and without LD_PRELOAD.
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

using Dict = std::map<std::string, std::vector<std::string>>;

uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

uint64_t fnv(const std::string &s, uint64_t h)
{
    for (unsigned char c : s)
        h = (h ^ c) * 0x100000001B3ULL;
    return h;
}

// Order-sensitive digest of a whole map (std::map iterates sorted, so it is deterministic).
uint64_t digest(const Dict &d)
{
    uint64_t h = 0xCBF29CE484222325ULL;
    for (const auto &kv : d) {
        h = fnv(kv.first, h);
        for (const auto &v : kv.second)
            h = fnv(v, h);
        h = mix(h ^ kv.second.size());
    }
    return h;
}

std::string make_string(uint64_t &state)
{
    state = mix(state);
    size_t len = state % 100 < 90 ? state % 40 : 100 + state % 5000; // mostly short (SSO), some long
    std::string s;
    for (size_t i = 0; i < len; i++)
        s.push_back(static_cast<char>('a' + (mix(state + i) % 26)));
    return s;
}

Dict build(unsigned id, unsigned round)
{
    uint64_t st = mix(id * 1000003ULL + round);
    Dict d;
    int keys = 200 + static_cast<int>(st % 200);
    for (int k = 0; k < keys; k++) {
        std::string key = make_string(st) + "#" + std::to_string(k);
        auto &vec = d[key];
        int n = static_cast<int>(mix(st + k) % 12);
        for (int j = 0; j < n; j++)
            vec.push_back(make_string(st));
        if (k % 7 == 0)
            vec.shrink_to_fit();
    }
    // some churn: erase a third, re-add a few
    for (auto it = d.begin(); it != d.end();) {
        if (mix(fnv(it->first, 1)) % 3 == 0)
            it = d.erase(it);
        else
            ++it;
    }
    return d;
}

struct alignas(64) Cacheline {
    uint64_t v[8];
};

// A one-slot mailbox per thread: the sender moves its map in, the receiver destroys it (cross-thread frees).
struct Mailbox {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::pair<std::unique_ptr<Dict>, uint64_t>> q;
};

} // namespace

int main()
{
    const char *sc = std::getenv("HAK_TEST_SCALE");
    int scale = sc && *sc ? std::max(1, std::atoi(sc)) : 100;
    const unsigned threads = 4;
    const unsigned rounds = std::max(2, 40 * scale / 100);
    std::vector<Mailbox> boxes(threads);
    std::vector<uint64_t> sums(threads, 0);
    std::vector<int> bad(threads, 0);

    std::vector<std::thread> ts;
    for (unsigned id = 0; id < threads; id++) {
        ts.emplace_back([&, id] {
            uint64_t acc = 0;
            for (unsigned r = 0; r < rounds; r++) {
                auto d = std::make_unique<Dict>(build(id, r));
                uint64_t h = digest(*d);
                {
                    Mailbox &to = boxes[(id + 1) % threads];
                    std::lock_guard<std::mutex> g(to.mu);
                    to.q.emplace_back(std::move(d), h);
                }
                boxes[(id + 1) % threads].cv.notify_one();
                std::pair<std::unique_ptr<Dict>, uint64_t> got;
                {
                    Mailbox &me = boxes[id];
                    std::unique_lock<std::mutex> g(me.mu);
                    me.cv.wait(g, [&] { return !me.q.empty(); });
                    got = std::move(me.q.front());
                    me.q.pop_front();
                }
                if (digest(*got.first) != got.second)
                    bad[id]++;
                acc = mix(acc ^ got.second);
                got.first.reset(); // destroyed here, built by the neighbour
                // unordered_map and aligned new on the side
                std::unordered_map<uint64_t, std::string> um;
                for (int i = 0; i < 2000; i++)
                    um.emplace(mix(i + r), std::to_string(i));
                std::vector<std::unique_ptr<Cacheline>> cl;
                for (int i = 0; i < 200; i++) {
                    cl.emplace_back(new Cacheline());
                    if (reinterpret_cast<uintptr_t>(cl.back().get()) % 64 != 0)
                        bad[id]++;
                    cl.back()->v[0] = static_cast<uint64_t>(i);
                }
                uint64_t s = 0;
                for (auto &c : cl)
                    s += c->v[0];
                acc = mix(acc ^ um.size() ^ s);
                std::vector<std::string> words;
                for (auto &kv : um)
                    words.push_back(kv.second);
                std::sort(words.begin(), words.end());
                acc = mix(acc ^ fnv(words.front() + words.back(), 7));
            }
            sums[id] = acc;
        });
    }
    for (auto &t : ts)
        t.join();
    int failures = 0;
    uint64_t total = 0;
    for (unsigned id = 0; id < threads; id++) {
        failures += bad[id];
        total = mix(total ^ sums[id]);
        std::printf("thread %u: %016llx\n", id, static_cast<unsigned long long>(sums[id]));
    }
    std::printf("checksum %016llx rounds %u\n", static_cast<unsigned long long>(total), rounds);
    if (failures) {
        std::fprintf(stderr, "test_cxx: %d maps or aligned blocks did not survive the hand-off\n", failures);
        return 1;
    }
    return 0;
}
