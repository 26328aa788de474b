namespace BigModel.Checkpoints;

/// <summary>Tensor shapes as Python prints them, for messages and displays.</summary>
public static class Shapes
{
    /// <summary><c>[384, 768]</c>; <c>[]</c> for a scalar.</summary>
    public static string Format(IReadOnlyList<long> shape) => "[" + string.Join(", ", shape) + "]";
}
