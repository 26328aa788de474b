<#
.SYNOPSIS
    Generates the module's MAML help (en-US/BigModel.Cmdlets.dll-Help.xml) from its one source: the XML
    documentation comments of the cmdlet classes, combined with what PowerShell itself knows of each cmdlet
    (parameter sets, positions, pipeline input, aliases, types).

.DESCRIPTION
    In the cmdlet sources:
      class <summary>        synopsis
      class <remarks>        description (one <para> per paragraph)
      class <example>        one per example: <code> then <para> remarks
      class <seealso cref>   related links (about topics by name)
      property <summary>     parameter description
      class <returns>, <notes> optional outputs description and notes
#>
param(
    [Parameter(Mandatory)] [string] $ModuleDirectory
)
$ErrorActionPreference = 'Stop'
$ModuleDirectory = (Resolve-Path $ModuleDirectory).Path
$manifest = Join-Path $ModuleDirectory 'BigModel.psd1'
$docPath = Join-Path $ModuleDirectory 'BigModel.Cmdlets.xml'
$module = Import-Module $manifest -Force -PassThru
[xml] $doc = Get-Content -Raw $docPath
$members = @{}
foreach ($m in $doc.doc.members.member) { $members[$m.name] = $m }

function Get-Paragraphs($node) {
    if ($null -eq $node) { return @() }
    $paras = @($node.SelectNodes('para') | ForEach-Object { ($_.InnerText -replace '\s+', ' ').Trim() })
    if ($paras.Count -eq 0) { $paras = @(($node.InnerText -replace '\s+', ' ').Trim()) }
    $paras | Where-Object { $_ }
}

$ns = @{
    maml = 'http://schemas.microsoft.com/maml/2004/10'
    command = 'http://schemas.microsoft.com/maml/dev/command/2004/10'
    dev = 'http://schemas.microsoft.com/maml/dev/2004/10'
}
$settings = [System.Xml.XmlWriterSettings]::new()
$settings.Indent = $true
$settings.Encoding = [System.Text.UTF8Encoding]::new($false)
$outDir = Join-Path $ModuleDirectory 'en-US'
New-Item -ItemType Directory -Force $outDir | Out-Null
$outPath = Join-Path $outDir 'BigModel.Cmdlets.dll-Help.xml'
$w = [System.Xml.XmlWriter]::Create($outPath, $settings)

function Para([string] $text) { $w.WriteStartElement('maml', 'para', $ns.maml); $w.WriteString($text); $w.WriteEndElement() }
function Description([string[]] $paras) {
    $w.WriteStartElement('maml', 'description', $ns.maml)
    foreach ($p in $paras) { Para $p }
    $w.WriteEndElement()
}
function TypeName([type] $t) {
    $underlying = [Nullable]::GetUnderlyingType($t)
    if ($underlying) { return $underlying.Name }
    if ($t.IsArray) { $t.GetElementType().Name + '[]' } else { $t.Name }
}
function PipelineText($p) {
    $kinds = @()
    if ($p.ValueFromPipeline) { $kinds += 'ByValue' }
    if ($p.ValueFromPipelineByPropertyName) { $kinds += 'ByPropertyName' }
    if ($kinds) { "True ($($kinds -join ', '))" } else { 'False' }
}

$common = [System.Management.Automation.Internal.CommonParameters].GetProperties().Name +
    [System.Management.Automation.Internal.ShouldProcessParameters].GetProperties().Name
$w.WriteStartElement('helpItems', 'http://msh')
$w.WriteAttributeString('schema', 'maml')
foreach ($cmd in (Get-Command -Module $module.Name -CommandType Cmdlet | Sort-Object Name)) {
    $member = $members["T:$($cmd.ImplementingType.FullName)"]
    if (-not $member) { throw "$($cmd.Name) ($($cmd.ImplementingType.FullName)) has no XML documentation." }
    $synopsis = Get-Paragraphs $member.SelectSingleNode('summary')
    $examples = @($member.SelectNodes('example'))
    if ($examples.Count -lt 2) { throw "$($cmd.Name) documents $($examples.Count) example(s); at least two are required." }

    $w.WriteStartElement('command', 'command', $ns.command)
    $w.WriteAttributeString('xmlns', 'maml', $null, $ns.maml)
    $w.WriteAttributeString('xmlns', 'dev', $null, $ns.dev)
    $w.WriteStartElement('command', 'details', $ns.command)
    $w.WriteElementString('name', $ns.command, $cmd.Name)
    $w.WriteElementString('verb', $ns.command, $cmd.Verb)
    $w.WriteElementString('noun', $ns.command, $cmd.Noun)
    Description $synopsis
    $w.WriteEndElement()
    Description (Get-Paragraphs $member.SelectSingleNode('remarks'))

    $parameters = $cmd.Parameters.Values | Where-Object { $_.Name -notin $common }
    $w.WriteStartElement('command', 'syntax', $ns.command)
    foreach ($set in $cmd.ParameterSets) {
        $w.WriteStartElement('command', 'syntaxItem', $ns.command)
        $w.WriteElementString('name', $ns.maml, $cmd.Name)
        foreach ($p in ($set.Parameters | Where-Object { $_.Name -notin $common })) {
            $w.WriteStartElement('command', 'parameter', $ns.command)
            $w.WriteAttributeString('required', "$($p.IsMandatory)".ToLowerInvariant())
            $w.WriteAttributeString('position', $(if ($p.Position -ge 0) { "$($p.Position)" } else { 'named' }))
            $w.WriteAttributeString('pipelineInput', (PipelineText $p))
            $w.WriteElementString('name', $ns.maml, $p.Name)
            if ($p.ParameterType -ne [switch] -and $p.ParameterType -ne [System.Management.Automation.SwitchParameter]) {
                $w.WriteStartElement('command', 'parameterValue', $ns.command)
                $w.WriteAttributeString('required', 'true')
                $w.WriteString((TypeName $p.ParameterType))
                $w.WriteEndElement()
            }
            $w.WriteEndElement()
        }
        $w.WriteEndElement()
    }
    $w.WriteEndElement()

    $w.WriteStartElement('command', 'parameters', $ns.command)
    foreach ($p in ($parameters | Sort-Object Name)) {
        $property = $members["P:$($cmd.ImplementingType.FullName).$($p.Name)"]
        if (-not $property) { throw "$($cmd.Name) -$($p.Name) has no XML documentation." }
        $attr = $p.Attributes | Where-Object { $_ -is [System.Management.Automation.ParameterAttribute] }
        $mandatory = [bool]($attr | Where-Object Mandatory)
        $position = ($attr | Where-Object { $_.Position -ge 0 } | Select-Object -First 1).Position
        $w.WriteStartElement('command', 'parameter', $ns.command)
        $w.WriteAttributeString('required', "$mandatory".ToLowerInvariant())
        $w.WriteAttributeString('position', $(if ($null -ne $position) { "$position" } else { 'named' }))
        $w.WriteAttributeString('pipelineInput', $(if ($attr | Where-Object { $_.ValueFromPipeline -or $_.ValueFromPipelineByPropertyName }) { PipelineText ($attr | Where-Object { $_.ValueFromPipeline -or $_.ValueFromPipelineByPropertyName } | Select-Object -First 1) } else { 'False' }))
        $w.WriteAttributeString('globbing', "$([bool]($p.Attributes | Where-Object { $_ -is [System.Management.Automation.SupportsWildcardsAttribute] }))".ToLowerInvariant())
        $w.WriteAttributeString('aliases', $(if ($p.Aliases.Count) { $p.Aliases -join ', ' } else { 'none' }))
        $w.WriteElementString('name', $ns.maml, $p.Name)
        $text = @(Get-Paragraphs $property.SelectSingleNode('summary'))
        $validateSet = $p.Attributes | Where-Object { $_ -is [System.Management.Automation.ValidateSetAttribute] }
        if ($validateSet) { $text += "Accepted values: $($validateSet.ValidValues -join ', ')." }
        Description $text
        $w.WriteStartElement('command', 'parameterValue', $ns.command)
        $w.WriteAttributeString('required', "$($p.ParameterType -ne [System.Management.Automation.SwitchParameter])".ToLowerInvariant())
        $w.WriteString((TypeName $p.ParameterType))
        $w.WriteEndElement()
        $w.WriteStartElement('dev', 'type', $ns.dev)
        $w.WriteElementString('name', $ns.maml, $p.ParameterType.FullName)
        $w.WriteEndElement()
        $w.WriteElementString('defaultValue', $ns.dev, 'None')
        $w.WriteEndElement()
    }
    $w.WriteEndElement()

    $w.WriteStartElement('command', 'inputTypes', $ns.command)
    foreach ($p in ($parameters | Where-Object { $_.Attributes | Where-Object { $_ -is [System.Management.Automation.ParameterAttribute] -and ($_.ValueFromPipeline -or $_.ValueFromPipelineByPropertyName) } })) {
        $w.WriteStartElement('command', 'inputType', $ns.command)
        $w.WriteStartElement('dev', 'type', $ns.dev)
        $w.WriteElementString('name', $ns.maml, $p.ParameterType.FullName)
        $w.WriteEndElement()
        Description @("-$($p.Name) $(PipelineText ($p.Attributes | Where-Object { $_ -is [System.Management.Automation.ParameterAttribute] } | Select-Object -First 1))")
        $w.WriteEndElement()
    }
    $w.WriteEndElement()

    $w.WriteStartElement('command', 'returnValues', $ns.command)
    foreach ($type in $cmd.OutputType) {
        $w.WriteStartElement('command', 'returnValue', $ns.command)
        $w.WriteStartElement('dev', 'type', $ns.dev)
        $w.WriteElementString('name', $ns.maml, $type.Name)
        $w.WriteEndElement()
        Description (Get-Paragraphs $member.SelectSingleNode('returns'))
        $w.WriteEndElement()
    }
    $w.WriteEndElement()

    $notes = Get-Paragraphs $member.SelectSingleNode('notes')
    if ($notes) {
        $w.WriteStartElement('maml', 'alertSet', $ns.maml)
        $w.WriteStartElement('maml', 'alert', $ns.maml)
        foreach ($n in $notes) { Para $n }
        $w.WriteEndElement()
        $w.WriteEndElement()
    }

    $w.WriteStartElement('command', 'examples', $ns.command)
    $i = 0
    foreach ($example in $examples) {
        $i++
        $w.WriteStartElement('command', 'example', $ns.command)
        $w.WriteElementString('title', $ns.maml, "-------------------------- Example $i --------------------------")
        $code = ($example.SelectSingleNode('code').InnerText -split "`n" | ForEach-Object { $_.TrimEnd() }) -join "`n"
        $w.WriteElementString('code', $ns.dev, $code.Trim())
        $w.WriteStartElement('dev', 'remarks', $ns.dev)
        foreach ($p in @($example.SelectNodes('para') | ForEach-Object { ($_.InnerText -replace '\s+', ' ').Trim() })) { Para $p }
        $w.WriteEndElement()
        $w.WriteEndElement()
    }
    $w.WriteEndElement()

    $w.WriteStartElement('command', 'relatedLinks', $ns.command)
    foreach ($link in @('about_BigModel') + @($member.SelectNodes('seealso') | ForEach-Object { $_.GetAttribute('href') } | Where-Object { $_ })) {
        $w.WriteStartElement('maml', 'navigationLink', $ns.maml)
        $w.WriteElementString('linkText', $ns.maml, $link)
        $w.WriteElementString('uri', $ns.maml, $(if ($link -like 'http*') { $link } else { '' }))
        $w.WriteEndElement()
    }
    $w.WriteEndElement()
    $w.WriteEndElement()
}
$w.WriteEndElement()
$w.Dispose()
Write-Host "Help written to $outPath"
