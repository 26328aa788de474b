namespace BigModel.Tests.Inference.Support;

public static class LogitAssert
{
    /// <summary>Every value within <paramref name="tolerance"/> (absolute) of the reference, with the worst one named on failure.</summary>
    public static void Close(double[][] expected, IReadOnlyList<float[]> actual, double tolerance)
    {
        Assert.Equal(expected.Length, actual.Count);
        double worst = 0;
        (int Row, int Column) at = (0, 0);
        for (int r = 0; r < expected.Length; r++)
        {
            Assert.Equal(expected[r].Length, actual[r].Length);
            for (int c = 0; c < expected[r].Length; c++)
            {
                double d = Math.Abs(expected[r][c] - actual[r][c]);
                if (double.IsNaN(d) || d > worst)
                {
                    worst = double.IsNaN(d) ? double.PositiveInfinity : d;
                    at = (r, c);
                }
            }
        }
        Assert.True(worst <= tolerance, $"largest difference {worst:E3} at [{at.Row}, {at.Column}] (expected {expected[at.Row][at.Column]}, got {actual[at.Row][at.Column]}) exceeds {tolerance:E1}");
    }
}
