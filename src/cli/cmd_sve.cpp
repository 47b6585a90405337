// deftnn subcommands registered from this file (see cli/common.h).
#include "cli/common.h"

namespace deftnn::cli {

void register_sve_commands(CLI::App& app, Registry& registry) {
  (void)app;
  (void)registry;
}

}  // namespace deftnn::cli
