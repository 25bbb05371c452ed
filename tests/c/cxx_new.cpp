// C++ operator new and delete replaced by the library (tests/capi/main.rs): compiled with
// g++ -std=c++17 -O1 and run linked against libcgmalloc.so and, built without it, with it
// preloaded; the root's limit is CGMALLOC_MAX=32M. Checks that every replaceable form
// resolves to the library, that blocks of every size band and alignment are usable and
// freed by every delete form, and that at the limit the throwing forms run the
// new_handler and throw std::bad_alloc while the nothrow forms return null.
// Prints "cxx_new: ok" and exits 0, or names each failure and exits 1.
#include <dlfcn.h>
#include <malloc.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <vector>

namespace {

int failed = 0;

void check(bool ok, const char *what)
{
    if (!ok) {
        std::fprintf(stderr, "cxx_new: failed: %s\n", what);
        failed++;
    }
}

// Where `symbol` resolves for the program: the object that defines the first definition.
std::string defined_in(const char *symbol)
{
    void *f = dlsym(RTLD_DEFAULT, symbol);
    Dl_info info{};
    if (f == nullptr || dladdr(f, &info) == 0 || info.dli_fname == nullptr) {
        return "";
    }
    return info.dli_fname;
}

int handler_calls = 0;

// Called by the C++ runtime when new finds no memory: gives up on the third call.
void give_up_on_third_call()
{
    if (++handler_calls == 3) {
        std::set_new_handler(nullptr);
    }
}

bool aligned_to(const void *p, std::size_t align)
{
    return (reinterpret_cast<std::uintptr_t>(p) & (align - 1)) == 0;
}

} // namespace

int main()
{
    const char *forms[] = {
        "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t",
        "_ZnwmSt11align_val_t", "_ZnamSt11align_val_t",
        "_ZnwmSt11align_val_tRKSt9nothrow_t", "_ZnamSt11align_val_tRKSt9nothrow_t",
        "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm", "_ZdlPvRKSt9nothrow_t",
        "_ZdaPvRKSt9nothrow_t", "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t",
        "_ZdlPvmSt11align_val_t", "_ZdaPvmSt11align_val_t",
        "_ZdlPvSt11align_val_tRKSt9nothrow_t", "_ZdaPvSt11align_val_tRKSt9nothrow_t",
    };
    for (const char *f : forms) {
        if (defined_in(f).find("libcgmalloc") == std::string::npos) {
            std::fprintf(stderr, "cxx_new: %s resolves to '%s'\n", f, defined_in(f).c_str());
            check(false, "every operator resolves to the library");
        }
    }

    // Every size band, plain and array, through every matching delete.
    for (std::size_t size : {0ul, 1ul, 24ul, 1000ul, 40000ul, 300000ul, 3000000ul}) {
        char *a = static_cast<char *>(::operator new(size));
        char *b = new char[size + 1];
        std::memset(a, 1, size);
        std::memset(b, 2, size + 1);
        check(a != nullptr && b != nullptr && malloc_usable_size(a) >= size,
              "new gives a usable block of the library");
        ::operator delete(a, size);
        delete[] b;
        char *c = new (std::nothrow) char[size + 7];
        check(c != nullptr, "nothrow new with room");
        ::operator delete[](c, std::nothrow);
    }
    for (std::size_t align : {32ul, 256ul, 4096ul, 65536ul, 1ul << 21}) {
        for (std::size_t size : {8ul, 5000ul, 200000ul}) {
            void *p = ::operator new(size, std::align_val_t(align));
            void *q = ::operator new[](size, std::align_val_t(align), std::nothrow);
            check(aligned_to(p, align) && aligned_to(q, align), "aligned new is aligned");
            std::memset(p, 3, size);
            std::memset(q, 4, size);
            ::operator delete(p, size, std::align_val_t(align));
            ::operator delete[](q, std::align_val_t(align), std::nothrow);
        }
    }
    std::vector<std::string> strings;
    for (int i = 0; i < 10000; i++) {
        strings.emplace_back(std::to_string(i) + std::string(i % 200, 'z'));
    }
    check(strings[9999].size() == 4 + 9999 % 200, "containers work");
    strings.clear();
    strings.shrink_to_fit();

    // At the root's limit (32M): the throwing forms run the new_handler, then throw.
    const std::size_t too_big = 64u << 20;
    std::set_new_handler(give_up_on_third_call);
    bool threw = false;
    try {
        char *p = new char[too_big];
        p[0] = 1;
        delete[] p;
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    check(threw, "new over the limit throws std::bad_alloc");
    check(handler_calls == 3, "new over the limit runs the new_handler until it gives up");
    threw = false;
    try {
        void *p = ::operator new(too_big, std::align_val_t(4096));
        ::operator delete(p, std::align_val_t(4096));
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    check(threw, "aligned new over the limit throws std::bad_alloc");
    check(new (std::nothrow) char[too_big] == nullptr, "nothrow new over the limit is null");
    check(::operator new(too_big, std::align_val_t(64), std::nothrow) == nullptr,
          "aligned nothrow new over the limit is null");
    char *small = new char[100];
    check(small != nullptr, "new within the limit after a refusal");
    delete[] small;

    std::printf("cxx_new: %s\n", failed ? "FAILED" : "ok");
    return failed ? 1 : 0;
}
