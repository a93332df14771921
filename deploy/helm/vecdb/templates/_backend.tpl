{{/*
A bundled backend: a headless Service and a one-pod StatefulSet with a volume.
(dict "root" $ "backend" "etcd" "values" .Values.etcd "ports" (list (dict "name" "client" "port" 2379)) "container" YAML)
where "container" is the rest of the container (command, env, probes) as a YAML string, and an optional
"configMap" (dict "name" NAME "path" DIR) is mounted read-only at DIR.
*/}}
{{- define "vecdb.backend" -}}
{{- $root := .root }}
{{- $name := printf "%s-%s" (include "vecdb.fullname" $root) .backend }}
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "vecdb.chartLabels" $root | nindent 4 }}
    {{- include "vecdb.backendSelector" . | nindent 4 }}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    {{- include "vecdb.backendSelector" . | nindent 4 }}
  ports:
    {{- range .ports }}
    - name: {{ .name }}
      port: {{ .port }}
      targetPort: {{ .name }}
      protocol: TCP
    {{- end }}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ $name }}
  labels:
    {{- include "vecdb.chartLabels" $root | nindent 4 }}
    {{- include "vecdb.backendSelector" . | nindent 4 }}
spec:
  serviceName: {{ $name }}
  replicas: 1
  selector:
    matchLabels:
      {{- include "vecdb.backendSelector" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "vecdb.chartLabels" $root | nindent 8 }}
        {{- include "vecdb.backendSelector" . | nindent 8 }}
    spec:
      containers:
        - name: {{ .backend }}
          image: {{ .values.image | quote }}
          ports:
            {{- range .ports }}
            - name: {{ .name }}
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
          {{- .container | nindent 10 }}
          {{- with .values.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            allowPrivilegeEscalation: false
          volumeMounts:
            - name: data
              mountPath: /data
            {{- with .configMap }}
            - name: config
              mountPath: {{ .path }}
              readOnly: true
            {{- end }}
      {{- with .configMap }}
      volumes:
        - name: config
          configMap:
            name: {{ .name }}
      {{- end }}
      {{- with .values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        {{- with .values.persistence.storageClass }}
        storageClassName: {{ . }}
        {{- end }}
        resources:
          requests:
            storage: {{ .values.persistence.size }}
{{- end }}
