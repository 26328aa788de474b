namespace BigModel.Harness;

internal static class Usage
{
    public const string Text = """
        BigModel.Harness COMMAND [options]

          generate --out DIR --size SIZE [--tensor-size SIZE] [--dtype F32] [--seed N] [--shards N]
              Writes a checkpoint of random tensors (model.safetensors, or N shards and an index) plus a config.json.

          split SOURCE DEST [--max-shard-size SIZE] [--dtype NAME] [--force] [--chunk SIZE] [--no-free-space-check] [--phases]
                [--pause-at PHASE]
              Runs Split-Checkpoint's core. With --phases, prints "phase NAME [shard]" lines as it goes; with
              --pause-at "NAME [shard]", prints "paused" after that phase and waits for a line on standard input.
              Ends with one JSON line: ok, code, shards, bytes, seconds, bytesPerSecond, peakRssBytes.

          offload SOURCE FOLDER [--phases] [--pause-at PHASE] [--no-free-space-check]
              Converts every tensor of SOURCE into the offload folder FOLDER, as a session does for disk-placed
              weights ("phase Converting N", "phase Committing", "phase Completed"). Ends with one JSON line: ok,
              code, file, digest.

          digest PATH
              Reads every tensor of a checkpoint (or of an offload folder's converted files) and prints one JSON
              line: ok, tensors, digest (SHA-256 over names, dtypes, shapes and bytes).

          bench SOURCE WORKDIR [--max-shard-size SIZE] [--dtype NAME] [--repeat N] [--markdown FILE]
              Times `cp` (+ fsync) of SOURCE's weight files against a split of SOURCE into WORKDIR, alternating, and
              reports throughput of each, their ratio, and the split's peak RSS. Appends a table to FILE if given.

          attacks [--fixtures DIR] [--stories DIR]
              Runs the pickle/zip attack corpus (attacks.json) and path-escape and resource-limit probes, printing
              what each ended in as Markdown tables (those of docs/reliability.md). Exit 0 when every answer is the
              expected typed error.

          heap-trim
              Frees 640 MiB of heap blocks kept apart by small live allocations and trims the C heap (Linux, glibc).
              Prints one JSON line: freedBytes, before and after (bytes of the freed blocks still resident), trimmed.

          kill-trials --work DIR [--target split|offload] [--trials N] [--size SIZE] [--seed N]
              Starts splits (or offload conversions) as child processes and kills them (SIGKILL) at random moments
              and phases; after each kill the destination (the offload file) must be absent, untouched, or complete
              and valid (byte-identical to the source), and a following run must clean every leftover. Exit 0 when
              every trial passes.

          disk-full --work DIR [--target split|offload] [--size SIZE]
              As root: mounts a small tmpfs under DIR and splits (or converts into an offload folder) onto it; it must
              fail with DiskFull and leave nothing behind, both when the free-space check catches it and when the
              disk fills mid-write. Exit 3 (skipped, with the reason) when not root or mounting fails.

        Sizes accept 5GB, 2GiB, 1048576 ...
        """;
}

internal sealed class UsageException(string message) : Exception(message);
