using System.Globalization;
using System.Text;
using BigModel.Errors;
using BigModel.IO;

namespace BigModel.DeviceMaps;

/// <summary>
/// Draws a device map as a self-contained SVG (or an HTML page holding it and the summary table): one bar per
/// device, the modules as blocks in map order coloured by device, sizes written on the blocks wide enough and in a
/// tooltip on every block. Accelerator bars are drawn against their budget; cpu and disk against what they hold,
/// since their budgets (all of RAM, an unlimited disk) would flatten every other bar. Runs of blocks too narrow to
/// see are drawn as one block naming how many modules it holds, so a map of thousands of modules stays legible.
/// </summary>
public static class DeviceMapChart
{
    private const int Width = 1000;
    private const int LabelWidth = 170;
    private const int BarLeft = LabelWidth + 10;
    private const int BarWidth = Width - BarLeft - 20;
    private const int RowHeight = 54;
    private const int BarHeight = 34;
    private const int Top = 64;
    private const double MinBlockWidth = 3.0;
    private const double CharWidth = 6.2;

    /// <summary>The chart as an SVG document.</summary>
    public static string ToSvg(DeviceMap map, string? title = null)
    {
        var rows = map.Devices.Where(d => d.Modules.Count > 0 || (d.GrantedBytes ?? 0) > 0).ToList();
        bool sized = map.HasSizes;
        var entryBytes = map.Entries.ToDictionary(e => e.Module, e => sized ? e.Bytes!.Value : 1L, StringComparer.Ordinal);

        // One scale for all bars, so lengths compare; cpu and disk budgets are left out of it (see the class summary).
        double scaleMax = 1;
        foreach (var d in rows)
        {
            long used = d.Modules.Sum(m => entryBytes[m]) + d.ReservedBytes;
            scaleMax = Math.Max(scaleMax, used);
            if (sized && d.Device.IsAccelerator && d.GrantedBytes is long g) scaleMax = Math.Max(scaleMax, g);
        }
        double scale = BarWidth / scaleMax;

        int legendTop = Top + rows.Count * RowHeight + 10;
        int height = legendTop + 30 + ((rows.Count + 2) / 3) * 22;
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{height}\" viewBox=\"0 0 {Width} {height}\" font-family=\"Segoe UI, Helvetica, Arial, sans-serif\" font-size=\"12\">\n");
        svg.Append("<defs><pattern id=\"reserved\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#f4f4f4\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#b0b0b0\" stroke-width=\"2\"/></pattern></defs>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<rect width=\"{Width}\" height=\"{height}\" fill=\"#ffffff\"/>\n");
        var heading = title ?? "Device map" + (map.Source is null ? "" : " — " + Path.GetFileName(map.Source.TrimEnd('/', '\\')));
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"20\" y=\"28\" font-size=\"18\" font-weight=\"600\" fill=\"#222\">{Escape(heading)}</text>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"20\" y=\"48\" fill=\"#555\">{Escape(Subtitle(map))}</text>\n");

        for (int r = 0; r < rows.Count; r++)
        {
            var d = rows[r];
            int y = Top + r * RowHeight;
            var (fill, dark) = Colours(d.Device);
            svg.Append("<g>\n");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"20\" y=\"{y + 15}\" font-size=\"14\" font-weight=\"600\" fill=\"{dark}\">{Escape(d.Device.ToString())}</text>\n");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"20\" y=\"{y + 32}\" fill=\"#444\">{Escape(UsageText(d, sized))}</text>\n");

            if (sized && d.Device.IsAccelerator && d.GrantedBytes is long granted && granted > 0)
                svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{BarLeft}\" y=\"{y}\" width=\"{F(granted * scale)}\" height=\"{BarHeight}\" fill=\"#f7f7f7\" stroke=\"#c8c8c8\"><title>{Escape($"{d.Device}: {ByteSize.Format(granted)} granted")}</title></rect>\n");

            double x = BarLeft;
            int shade = 0;
            foreach (var block in Blocks(d.Modules, entryBytes, scale))
            {
                double w = block.Bytes * scale;
                var colour = shade++ % 2 == 0 ? fill : Lighter(fill);
                var tip = block.Count == 1
                    ? $"{Display(block.First)} — {Size(block.Bytes, sized)} on {d.Device}"
                    : $"{block.Count} modules, {Display(block.First)} … {Display(block.Last)} — {Size(block.Bytes, sized)} on {d.Device}";
                svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{F(x)}\" y=\"{y}\" width=\"{F(Math.Max(w, 0.5))}\" height=\"{BarHeight}\" fill=\"{colour}\" stroke=\"#ffffff\" stroke-width=\"0.5\"><title>{Escape(tip)}</title></rect>\n");
                var label = block.Count == 1 ? ShortName(block.First) : $"{block.Count} modules";
                var size = Size(block.Bytes, sized);
                if (w >= (label.Length + 1) * CharWidth)
                    svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{F(x + 4)}\" y=\"{y + 14}\" fill=\"#ffffff\" font-size=\"11\" pointer-events=\"none\">{Escape(label)}</text>\n");
                if (w >= (size.Length + 1) * CharWidth)
                    svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{F(x + 4)}\" y=\"{y + 28}\" fill=\"#ffffff\" font-size=\"10\" pointer-events=\"none\">{Escape(size)}</text>\n");
                x += w;
            }
            if (d.ReservedBytes > 0 && sized)
            {
                double w = d.ReservedBytes * scale;
                svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{F(x)}\" y=\"{y}\" width=\"{F(w)}\" height=\"{BarHeight}\" fill=\"url(#reserved)\" stroke=\"#b0b0b0\"><title>{Escape($"{ByteSize.Format(d.ReservedBytes)} kept free on {d.Device} for the largest layer")}</title></rect>\n");
                x += w;
            }
            if (d.Modules.Count == 0)
                svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{BarLeft + 6}\" y=\"{y + 21}\" fill=\"#888\">nothing placed</text>\n");
            svg.Append("</g>\n");
        }

        // Legend entries flow left to right and wrap, sized by their text.
        double lx = 20;
        int ly = legendTop + 16;
        foreach (var d in rows)
        {
            var (fill, _) = Colours(d.Device);
            var share = d.Share is double s ? $" ({(s * 100).ToString("0.#", CultureInfo.InvariantCulture)}%)" : "";
            var text = $"{d.Device}: {d.Modules.Count} entr{(d.Modules.Count == 1 ? "y" : "ies")}{(sized ? ", " + ByteSize.Format(d.UsedBytes ?? 0) : "")}{share}";
            double width = 20 + text.Length * CharWidth + 24;
            if (lx > 20 && lx + width > Width - 10)
            {
                lx = 20;
                ly += 22;
            }
            svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{F(lx)}\" y=\"{ly - 11}\" width=\"14\" height=\"14\" fill=\"{fill}\"/>");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{F(lx + 20)}\" y=\"{ly}\" fill=\"#333\">{Escape(text)}</text>\n");
            lx += width;
        }
        svg.Append("</svg>\n");
        return svg.ToString();
    }

    /// <summary>An HTML page with the chart and the per-device summary table.</summary>
    public static string ToHtml(DeviceMap map, string? title = null)
    {
        var heading = title ?? "Device map" + (map.Source is null ? "" : " — " + Path.GetFileName(map.Source.TrimEnd('/', '\\')));
        var html = new StringBuilder();
        html.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        html.Append(CultureInfo.InvariantCulture, $"<title>{Escape(heading)}</title>\n");
        html.Append("<style>body{font-family:Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin-top:16px}th,td{border:1px solid #ddd;padding:4px 10px;text-align:right}th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}ul{color:#8a5a00}</style>\n</head>\n<body>\n");
        html.Append(ToSvg(map, title));
        html.Append("<table>\n<tr><th>device</th><th>used</th><th>granted</th><th>kept free</th><th>entries</th><th>share</th></tr>\n");
        foreach (var d in map.Devices)
        {
            html.Append(CultureInfo.InvariantCulture,
                $"<tr><td>{Escape(d.Device.ToString())}</td><td>{(d.UsedBytes is long u ? ByteSize.Format(u) : "?")}</td><td>{(d.GrantedBytes is long g ? ByteSize.Format(g) : "unlimited")}</td><td>{ByteSize.Format(d.ReservedBytes)}</td><td>{d.Modules.Count}</td><td>{(d.Share is double s ? (s * 100).ToString("0.#", CultureInfo.InvariantCulture) + "%" : "?")}</td></tr>\n");
        }
        html.Append("</table>\n");
        if (map.Warnings.Count > 0)
        {
            html.Append("<ul>\n");
            foreach (var w in map.Warnings) html.Append("<li>").Append(Escape(w.Message)).Append("</li>\n");
            html.Append("</ul>\n");
        }
        html.Append("</body>\n</html>\n");
        return html.ToString();
    }

    /// <summary>Writes the chart: HTML for .html/.htm, SVG otherwise.</summary>
    public static void Save(DeviceMap map, string path, string? title = null)
    {
        var ext = Path.GetExtension(path);
        bool html = ext.Equals(".html", StringComparison.OrdinalIgnoreCase) || ext.Equals(".htm", StringComparison.OrdinalIgnoreCase);
        var text = html ? ToHtml(map, title) : ToSvg(map, title);
        FileErrors.Guard(path, () => File.WriteAllText(path, text, new UTF8Encoding(false)), "the chart's folder does not exist.");
    }

    private readonly record struct Block(string First, string Last, int Count, long Bytes);

    /// <summary>Consecutive modules, merging runs too narrow to see on their own.</summary>
    private static IEnumerable<Block> Blocks(IReadOnlyList<string> modules, Dictionary<string, long> bytes, double scale)
    {
        Block? run = null;
        foreach (var m in modules)
        {
            long b = bytes[m];
            bool narrow = b * scale < MinBlockWidth;
            if (run is { } r)
            {
                bool runNarrow = r.Bytes * scale < MinBlockWidth;
                if (narrow && runNarrow)
                {
                    run = new Block(r.First, m, r.Count + 1, r.Bytes + b);
                    continue;
                }
                yield return r;
            }
            run = new Block(m, m, 1, b);
        }
        if (run is { } last) yield return last;
    }

    private static string Subtitle(DeviceMap map)
    {
        if (map.TotalBytes is not long total) return $"{map.Count} entries; sizes unknown, so every block has the same width";
        var text = $"{ByteSize.Format(total)} in {map.Count} entries";
        if (map.OffloadedBytes is long off && off > 0) text += $"; {ByteSize.Format(off)} ({DeviceMap.Percent(off, total)}) offloaded";
        if (map.Strategy is DeviceMapStrategy s) text += $"; strategy {s.ToAccelerateName()}";
        return text;
    }

    private static string UsageText(DeviceUsage d, bool sized)
    {
        if (!sized) return $"{d.Modules.Count} entr{(d.Modules.Count == 1 ? "y" : "ies")}";
        var used = ByteSize.Format(d.UsedBytes ?? 0);
        return d.GrantedBytes is long g ? $"{used} of {ByteSize.Format(g)}" : used;
    }

    private static string Size(long bytes, bool sized) => sized ? ByteSize.Format(bytes) : "size unknown";

    private static string Display(string module) => module.Length == 0 ? "(whole model)" : module;

    /// <summary>The last two segments: "layers.12" tells more than "model.layers.12" fits.</summary>
    private static string ShortName(string module)
    {
        if (module.Length == 0) return "(whole model)";
        int last = module.LastIndexOf('.');
        if (last < 0) return module;
        int before = module.LastIndexOf('.', last - 1);
        return before < 0 ? module : module[(before + 1)..];
    }

    private static (string Fill, string Dark) Colours(Device device) => device.Kind switch
    {
        DeviceKind.Gpu => GpuColours[device.Index % GpuColours.Length],
        DeviceKind.Mps or DeviceKind.Xpu => ("#2a9d8f", "#1d6f65"),
        DeviceKind.Cpu => ("#e76f51", "#a54b35"),
        _ => ("#6c757d", "#474d52"),
    };

    private static readonly (string, string)[] GpuColours =
    [
        ("#2b6cb0", "#1c4a7a"), ("#2f855a", "#1f5a3c"), ("#6b46c1", "#4a2f88"), ("#b7791f", "#7f5415"),
        ("#c53030", "#8a2121"), ("#319795", "#226a68"), ("#d53f8c", "#962c62"), ("#4a5568", "#333b48"),
    ];

    private static string Lighter(string hex)
    {
        int Channel(int i) => Convert.ToInt32(hex.Substring(i, 2), 16);
        string Mix(int c) => ((int)(c + (255 - c) * 0.22)).ToString("x2", CultureInfo.InvariantCulture);
        return "#" + Mix(Channel(1)) + Mix(Channel(3)) + Mix(Channel(5));
    }

    private static string F(double v) => v.ToString("0.##", CultureInfo.InvariantCulture);

    private static string Escape(string s)
    {
        var sb = new StringBuilder(s.Length);
        foreach (var c in s)
        {
            switch (c)
            {
                case '<': sb.Append("&lt;"); break;
                case '>': sb.Append("&gt;"); break;
                case '&': sb.Append("&amp;"); break;
                case '"': sb.Append("&quot;"); break;
                case '\'': sb.Append("&#39;"); break;
                default:
                    // Control characters are not allowed in XML 1.0 documents.
                    if (c < 0x20 && c is not ('\t' or '\n' or '\r')) sb.Append('?');
                    else sb.Append(c);
                    break;
            }
        }
        return sb.ToString();
    }
}
