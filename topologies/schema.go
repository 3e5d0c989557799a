package topologies

import _ "embed"

// Schema is the JSON Schema (draft 2020-12) of the topology file, for editors
// (yaml-language-server: `# yaml-language-server: $schema=...`) and for
// `labctl schema`. It checks shape only; Plan checks meaning.
//
//go:embed schema.json
var Schema []byte
