using System.Text;

namespace BigModel.Checkpoints.PyTorch;

/// <summary>The text operands of protocol 0: Python bytes literals (STRING) and raw-unicode-escape text (UNICODE).</summary>
internal static class PickleText
{
    /// <summary>The body of a protocol-0 STRING: a Python bytes literal in quotes, with backslash escapes.</summary>
    public static bool TryDecodeStringLiteral(ReadOnlySpan<byte> line, out string value, out string error)
    {
        value = "";
        error = "";
        if (line.Length < 2 || (line[0] != (byte)'\'' && line[0] != (byte)'"') || line[^1] != line[0])
        {
            error = "is not a quoted string literal";
            return false;
        }
        var body = line[1..^1];
        var sb = new StringBuilder(body.Length);
        for (int i = 0; i < body.Length; i++)
        {
            byte b = body[i];
            if (b != (byte)'\\' || i + 1 >= body.Length)
            {
                sb.Append((char)b);
                continue;
            }
            byte e = body[++i];
            switch (e)
            {
                case (byte)'\\': sb.Append('\\'); break;
                case (byte)'\'': sb.Append('\''); break;
                case (byte)'"': sb.Append('"'); break;
                case (byte)'n': sb.Append('\n'); break;
                case (byte)'r': sb.Append('\r'); break;
                case (byte)'t': sb.Append('\t'); break;
                case (byte)'a': sb.Append('\a'); break;
                case (byte)'b': sb.Append('\b'); break;
                case (byte)'f': sb.Append('\f'); break;
                case (byte)'v': sb.Append('\v'); break;
                case (byte)'\n': break;
                case (byte)'x':
                    if (i + 2 >= body.Length || !IsHex(body[i + 1]) || !IsHex(body[i + 2]))
                    {
                        error = "has an invalid \\x escape";
                        return false;
                    }
                    sb.Append((char)(HexValue(body[i + 1]) * 16 + HexValue(body[i + 2])));
                    i += 2;
                    break;
                case >= (byte)'0' and <= (byte)'7':
                {
                    int octal = e - '0';
                    for (int k = 0; k < 2 && i + 1 < body.Length && body[i + 1] is >= (byte)'0' and <= (byte)'7'; k++)
                        octal = octal * 8 + (body[++i] - '0');
                    sb.Append((char)(octal & 0xFF));
                    break;
                }
                default:
                    sb.Append('\\').Append((char)e);
                    break;
            }
        }
        value = sb.ToString();
        return true;
    }

    /// <summary>The body of a protocol-0 UNICODE: latin-1 text where only \uXXXX and \UXXXXXXXX are escapes.</summary>
    public static bool TryDecodeRawUnicodeEscape(ReadOnlySpan<byte> line, out string value, out string error)
    {
        value = "";
        error = "";
        var sb = new StringBuilder(line.Length);
        for (int i = 0; i < line.Length; i++)
        {
            byte b = line[i];
            if (b == (byte)'\\' && i + 1 < line.Length && line[i + 1] is (byte)'u' or (byte)'U')
            {
                int digits = line[i + 1] == (byte)'u' ? 4 : 8;
                if (i + 2 + digits > line.Length)
                {
                    error = "has a truncated \\u escape";
                    return false;
                }
                long cp = 0;
                for (int k = 0; k < digits; k++)
                {
                    byte h = line[i + 2 + k];
                    if (!IsHex(h))
                    {
                        error = "has an invalid \\u escape";
                        return false;
                    }
                    cp = cp * 16 + HexValue(h);
                }
                if (cp > 0x10FFFF)
                {
                    error = $"escapes code point 0x{cp:x}, beyond Unicode";
                    return false;
                }
                if (cp is >= 0xD800 and <= 0xDFFF) sb.Append((char)cp);
                else sb.Append(char.ConvertFromUtf32((int)cp));
                i += 1 + digits;
            }
            else
            {
                sb.Append((char)b);
            }
        }
        value = sb.ToString();
        return true;
    }

    private static bool IsHex(byte b) => b is >= (byte)'0' and <= (byte)'9' or >= (byte)'a' and <= (byte)'f' or >= (byte)'A' and <= (byte)'F';

    private static int HexValue(byte b) => b <= '9' ? b - '0' : (b | 0x20) - 'a' + 10;
}
