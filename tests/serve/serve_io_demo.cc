// A daemon made of the serve I/O layer and the tests' dummy handler, for what needs a real
// process: signals, socket activation, sd_notify. Prints each event on a line of stdout.
//   serve_io_demo (--socket PATH | --systemd) [--watch DIR]...
#include <unistd.h>

#include <iostream>
#include <string>

#include "tests/serve/dummy.h"

int main(int argc, char** argv) {
  using namespace ptrust;
  try {
    serve::EventLoop loop;
    std::vector<std::string> watch;
    bool listening = false;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--socket" && i + 1 < argc) {
        loop.listen_unix(argv[++i], testing::dummy_handler);
        listening = true;
      } else if (a == "--systemd") {
        if (!loop.listen_systemd(testing::dummy_handler)) throw Error(Code::kUsage, "no socket passed by systemd");
        listening = true;
      } else if (a == "--watch" && i + 1 < argc) {
        watch.push_back(argv[++i]);
      } else {
        throw Error(Code::kUsage, "unknown argument '" + a + "'");
      }
    }
    if (!listening) throw Error(Code::kUsage, "--socket PATH or --systemd");
    if (!watch.empty()) loop.watch(watch, [] { std::cout << "change" << std::endl; });
    loop.handle_signals([] { std::cout << "hup" << std::endl; });
    serve::notify_ready();
    std::cout << "ready pid=" << getpid() << std::endl;
    loop.run();
    std::cout << "stopped" << std::endl;
    return 0;
  } catch (const Error& e) {
    std::cerr << "ptrust: " << code_name(e.code()) << ": " << e.what() << "\n";
    return exit_status(e.code());
  }
}
