package main

import (
	"github.com/spf13/cobra"

	"github.com/labctl/labctl/topologies"
)

func newSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of topology files",
		Long: `Print the JSON Schema (draft 2020-12) of topology files, for editors. With the
YAML language server, save it and start a topology with:
  # yaml-language-server: $schema=./topology.schema.json
The schema checks shape only; labctl plan checks meaning (references,
address conflicts, reachable gateways, host interfaces).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(topologies.Schema)
			return err
		},
	}
}
