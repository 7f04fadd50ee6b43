using System.Text.Json;
using System.Text.Json.Serialization;

namespace Faultline.Cli.Replay;

/// <summary>Reads and writes a <see cref="Trace"/> as JSON (snake_case names).</summary>
internal static class TraceFile
{
    private static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = false,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <summary>Writes <paramref name="trace"/> to <paramref name="path"/>.</summary>
    public static void Write(string path, Trace trace) => File.WriteAllText(path, JsonSerializer.Serialize(trace, Options) + "\n");

    /// <summary>Reads a trace.</summary>
    /// <exception cref="InvalidDataException">Not a trace, or one of another version.</exception>
    public static Trace Read(string path)
    {
        Trace? trace;
        try
        {
            trace = JsonSerializer.Deserialize<Trace>(File.ReadAllText(path), Options);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not a faultline trace: {e.Message}", e);
        }
        if (trace is null || trace.Calls is null || trace.Layouts is null)
        {
            throw new InvalidDataException($"{path} is not a faultline trace");
        }
        return trace.Version == Trace.CurrentVersion
            ? trace with { Faults = trace.Faults ?? [], FileSystems = trace.FileSystems ?? new Dictionary<string, string>() }
            : throw new InvalidDataException($"{path}: trace version {trace.Version}, expected {Trace.CurrentVersion}");
    }
}
