// Entry points of the CLI subcommands; each parses its own options (CLI11) and returns an exit code.
#pragma once

namespace bitexact::apps {

int cmd_generate(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_serve(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_verify(int argc, char** argv);

}  // namespace bitexact::apps
