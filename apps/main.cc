// The `bitexact` command line: one binary, one subcommand per job (ARCHITECTURE.md section 4).
// Each subcommand lives in its own cmd_*.cc and returns a process exit code; user errors are
// printed as one line and give exit code 1 (2 for usage), never a crash.
#include <cstdio>
#include <cstring>
#include <string>

#include "apps/commands.h"
#include "core/error.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int argc, char** argv);
  const char* help;
};

const Command kCommands[] = {
    {"generate", bitexact::apps::cmd_generate, "generate completions for prompts (JSONL in, JSONL out)"},
    {"tokenize", bitexact::apps::cmd_tokenize, "print the token ids of text"},
    {"serve", bitexact::apps::cmd_serve, "serve the OpenAI-compatible HTTP API"},
    {"bench", bitexact::apps::cmd_bench,
     "benchmarks: `bench serve` drives a server, `bench kernels` times the CUDA kernels"},
    {"verify", bitexact::apps::cmd_verify, "measure the invariance contract on a model, bit for bit"},
};

void usage() {
  std::fprintf(stderr, "usage: bitexact <command> [options]\n\ncommands:\n");
  for (const Command& c : kCommands) std::fprintf(stderr, "  %-10s %s\n", c.name, c.help);
  std::fprintf(stderr, "\n`bitexact <command> --help` describes a command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  for (const Command& c : kCommands) {
    if (std::strcmp(argv[1], c.name) != 0) continue;
    try {
      return c.run(argc - 1, argv + 1);
    } catch (const bitexact::Error& e) {
      std::fprintf(stderr, "bitexact %s: error: %s\n", c.name, e.what());
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bitexact %s: unexpected error: %s\n", c.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "bitexact: unknown command `%s`\n", argv[1]);
  usage();
  return 2;
}
