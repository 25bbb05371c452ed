// include/cgmalloc.h from C++ (tests/capi/main.rs): compiled with g++ -std=c++17 -Wall -Wextra
// -Werror -pedantic, linked against libcgmalloc.so and run. Exercises a few functions of
// each kind, and operator new (which reaches the library's malloc) charging a group.
// Prints "header.cpp: ok" and exits 0, or names each failure and exits 1.
#include "cgmalloc.h"
#include "cgmalloc.h" // the include guard

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

int failed = 0;

void check(bool ok, const char *what)
{
    if (!ok) {
        std::fprintf(stderr, "header.cpp: failed: %s\n", what);
        failed++;
    }
}

std::size_t reclaim_nothing(void *, cgm_group_t, std::size_t)
{
    return 0;
}

int oom_fail(void *ctx, const cgm_oom_info *info)
{
    *static_cast<cgm_oom_info *>(ctx) = *info;
    return CGM_OOM_FAIL;
}

std::uint64_t current(cgm_group_t g)
{
    cgm_stat s{};
    return cgm_group_stat(g, &s) == 0 ? s.current : 0;
}

} // namespace

int main()
{
    const cgm_group_t root = cgm_root();
    check(root != 0, "cgm_root");
    check(cgm_thread_group() == root, "cgm_thread_group");
    check(cgm_version() != nullptr && std::strlen(cgm_version()) > 0, "cgm_version");
    check(std::string(cgm_strerror(-ENOENT)) == cgm_strerror(ENOENT), "cgm_strerror");

    cgm_group_t g = 0;
    check(cgm_group_create("/cxx", &g) == 0 && g != 0, "cgm_group_create");
    cgm_group_t o = 0;
    check(cgm_group_open("/cxx", &o) == 0 && o == g, "cgm_group_open");
    char buf[64];
    check(cgm_group_path(g, buf, sizeof buf) == 4 && std::string(buf) == "/cxx", "cgm_group_path");
    check(cgm_group_write(g, "memory.max", "1M") == 0, "cgm_group_write");
    check(cgm_group_read(g, "memory.max", buf, sizeof buf) == 8 &&
              std::string(buf) == "1048576\n",
          "cgm_group_read");
    cgm_stat st{};
    check(cgm_group_stat(g, &st) == 0 && st.max == (1u << 20), "cgm_group_stat");

    std::uint64_t id = 0;
    check(cgm_reclaimer_add(g, reclaim_nothing, nullptr, &id) == 0, "cgm_reclaimer_add");
    check(cgm_reclaimer_remove(id) == 0, "cgm_reclaimer_remove");
    cgm_oom_info info{};
    check(cgm_oom_handler_set(g, oom_fail, &info) == 0, "cgm_oom_handler_set");
    check(cgm_charge(g, 4096, CGM_CHARGE_NORETRY) == 0, "cgm_charge");
    check(cgm_uncharge(g, 4096) == 0, "cgm_uncharge");
    check(cgm_charge(g, 2u << 20, 0) == -ENOMEM, "cgm_charge refused");
    check(info.group == g && info.over_limit == g && info.max == (1u << 20), "cgm_oom_info");
    check(cgm_oom_handler_set(g, nullptr, nullptr) == 0, "cgm_oom_handler_set(NULL)");
    check(cgm_drain_stocks() == 0, "cgm_drain_stocks");

    // operator new and std::vector allocate through the library's malloc.
    check(cgm_thread_attach(g) == 0 && cgm_thread_group() == g, "cgm_thread_attach");
    const std::uint64_t before = current(g);
    {
        std::vector<char> v(256 * 1024, 'x');
        auto s = std::make_unique<std::string>(100000, 'y');
        check(current(g) >= before + 256 * 1024 + 100000, "new charges the attached group");
        check(v.back() == 'x' && s->back() == 'y', "the blocks are usable");
    }
    check(cgm_thread_attach(root) == 0, "cgm_thread_attach(root)");
    void *p = cgm_malloc(100);
    check(p != nullptr, "cgm_malloc");
    cgm_free(p);
    cgm_group_reclaim(g, 64u << 20);
    check(cgm_group_destroy(g) == 0, "cgm_group_destroy");
    check(cgm_group_open("/cxx", &o) == -ENOENT, "destroyed");

    std::printf("header.cpp: %s\n", failed ? "FAILED" : "ok");
    return failed ? 1 : 0;
}
