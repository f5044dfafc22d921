// The responder's user-assigned managed identity: the only principal that acts on storage,
// Sentinel, Log Analytics and (after the manual Graph grant) service principals.
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
