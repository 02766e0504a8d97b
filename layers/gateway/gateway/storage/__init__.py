"""Storage: the DynamoDB client and the item codec every account and routing module shares."""
