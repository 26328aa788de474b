using BigModel.Checkpoints;

namespace BigModel.Inference;

/// <summary>How disk-placed weights reach a CPU computation.</summary>
public enum DiskAccess
{
    /// <summary>
    /// <see cref="Mapped"/> while the memory left can keep the disk-placed weights cached from one token to the next;
    /// <see cref="Direct"/> when it cannot (a model bigger than the memory it may use, a container limit), where
    /// caching them would only make the kernel reclaim pages in the middle of every read.
    /// </summary>
    Auto,
    /// <summary>
    /// Compute straight from the memory-mapped weight files; the page cache is the staging buffer and anonymous
    /// memory stays flat. With prefetch on, the next blocks' pages are brought in ahead of use.
    /// </summary>
    Mapped,
    /// <summary>
    /// Read each block into a staging ring in private memory when used (ahead of use with prefetch on), through the
    /// page cache, and hand the ring space back after.
    /// </summary>
    Copied,
    /// <summary>
    /// As <see cref="Copied"/>, with reads that bypass the page cache (<c>O_DIRECT</c>) where the file system allows
    /// it, so streaming holds no memory beyond the ring; elsewhere reads go through the page cache.
    /// </summary>
    Direct,
}

/// <summary>What computes the linear layers of CPU-computed blocks.</summary>
public enum LinearKernel
{
    /// <summary>
    /// The native decode kernel for one-token steps (and inputs of up to 8 rows) when the computation runs on a CPU
    /// that has AVX2 and FMA; libtorch for everything else (prompts, GPUs).
    /// </summary>
    Auto,
    /// <summary>libtorch for every linear layer (for comparison, or to rule the kernel out).</summary>
    LibTorch,
    /// <summary>As <see cref="Auto"/>, but failing when this processor cannot run the kernel.</summary>
    Native,
}

/// <summary>Settings for <see cref="InferenceSession.Open(string, IReadOnlyDictionary{string, string}?, InferenceOptions?, IProgress{InferenceLoadProgress}?, CancellationToken)"/>.</summary>
public sealed record InferenceOptions
{
    /// <summary>Converts floating-point weights to this type on load (F32, F16, BF16); null computes in the stored type.</summary>
    public DType? DType { get; init; }

    /// <summary>
    /// Where cpu- and disk-placed blocks compute: "cpu" or "cuda:N". Null takes the first GPU the placement names,
    /// else the CPU (Accelerate's main device).
    /// </summary>
    public string? ExecutionDevice { get; init; }

    /// <summary>
    /// Prepare offloaded blocks on a background thread ahead of their use. Off, each block is brought in when it
    /// is needed and dropped after (Accelerate's synchronous way).
    /// </summary>
    public bool Prefetch { get; init; } = true;

    /// <summary>Blocks prepared ahead of the one computing (1 to <see cref="MaxPrefetchDepth"/>).</summary>
    public int PrefetchDepth { get; init; } = DefaultPrefetchDepth;

    /// <summary>Blocks prepared ahead unless told otherwise: two, so a slow moment of storage or compute is absorbed.</summary>
    public const int DefaultPrefetchDepth = 2;

    /// <summary>The deepest prefetch accepted.</summary>
    public const int MaxPrefetchDepth = 64;

    /// <summary>Blocks brought in ahead of the computing one: <see cref="PrefetchDepth"/>, or 0 without <see cref="Prefetch"/>.</summary>
    public int BlocksAhead => Prefetch ? PrefetchDepth : 0;

    /// <summary>How disk-placed weights reach a CPU computation.</summary>
    public DiskAccess DiskAccess { get; init; } = DiskAccess.Auto;

    /// <summary>How a prefetch brings mapped pages in (with <see cref="Inference.DiskAccess.Mapped"/>).</summary>
    /// <remarks>
    /// docs/benchmarks.md compares the four methods on cold storage; on this shared machine their order changes from
    /// run to run (storage speed varies more than they differ), so the default stays the one that reads exactly the
    /// block's pages and nothing past it.
    /// </remarks>
    public PageInMethod PageIn { get; init; } = PageInMethod.Read;

    /// <summary>
    /// Drop disk-placed weights from the page cache once their block has run (mapped pages after use, copied ones
    /// right after reading), so they hold memory only while in the prefetch window. Off, the kernel keeps them
    /// cached while memory allows (faster when the machine has room). Null decides per run: on when
    /// <see cref="AvailableHostBytes"/> is known and what it leaves beside the resident weights cannot cache the
    /// disk-placed ones anyway — there the kernel would reclaim pages itself, blindly, prefetched ones included.
    /// </summary>
    public bool? ReleaseDiskPages { get; init; }

    internal bool ReleasesDiskPages => ReleaseDiskPages == true;

    /// <summary>
    /// Host memory the session may use, in bytes. When given, a placement whose cpu-resident weights plus the
    /// prefetch window exceed it is refused before anything is loaded.
    /// </summary>
    public long? AvailableHostBytes { get; init; }

    /// <summary>Threads torch and the native linear kernel compute with; null uses the cores this process may use (affinity and cgroup quota).</summary>
    public int? Threads { get; init; }

    /// <summary>
    /// What computes the linear layers of CPU-computed blocks. Decoding one token reads every weight once, and
    /// the native kernel does that at memory bandwidth (libtorch's matrix-vector product reaches about a third of it).
    /// </summary>
    public LinearKernel LinearKernel { get; init; } = LinearKernel.Auto;

    /// <summary>
    /// Folder for the safetensors copy of disk-placed weights of PyTorch (.bin) checkpoints. Null uses a folder
    /// under the system temp folder, reused while the source is unchanged.
    /// </summary>
    public string? OffloadFolder { get; init; }

    /// <summary>tokenizer.json to use; null looks beside the checkpoint.</summary>
    public string? TokenizerPath { get; init; }

    internal InferenceOptions Validate()
    {
        if (PrefetchDepth < 1 || PrefetchDepth > MaxPrefetchDepth)
            throw new Errors.BigModelException(Errors.BigModelErrorCode.InvalidArgument, $"PrefetchDepth is {PrefetchDepth}; use 1 to {MaxPrefetchDepth}.");
        if (Threads is int t && (t < 1 || t > 4096))
            throw new Errors.BigModelException(Errors.BigModelErrorCode.InvalidArgument, $"Threads is {t}; use 1 or more.");
        if (!Enum.IsDefined(DiskAccess))
            throw new Errors.BigModelException(Errors.BigModelErrorCode.InvalidArgument, $"DiskAccess is {(int)DiskAccess}; use Auto, Mapped, Copied or Direct.");
        if (!Enum.IsDefined(LinearKernel))
            throw new Errors.BigModelException(Errors.BigModelErrorCode.InvalidArgument, $"LinearKernel is {(int)LinearKernel}; use Auto, LibTorch or Native.");
        if (AvailableHostBytes is long b && b < 0)
            throw new Errors.BigModelException(Errors.BigModelErrorCode.InvalidArgument, $"AvailableHostBytes is {b}; it cannot be negative.");
        if (DType is Checkpoints.DType d && d is not (Checkpoints.DType.F32 or Checkpoints.DType.F16 or Checkpoints.DType.BF16 or Checkpoints.DType.F64))
            throw new Errors.BigModelException(Errors.BigModelErrorCode.InvalidDType, $"inference computes in float32, float16, bfloat16 or float64, not {d.TorchName()}.");
        return this;
    }
}

/// <summary>Load progress: which block is being materialised, out of how many.</summary>
public sealed record InferenceLoadProgress(string Stage, string? Block, int BlocksDone, int BlockCount, long BytesDone, long BytesTotal);
