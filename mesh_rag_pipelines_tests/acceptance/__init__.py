"""End-to-end acceptance tests: the product driven and observed only as a user does, through
`mesh-rag`, the Dagster UI's GraphQL API, queries and the sources themselves."""
