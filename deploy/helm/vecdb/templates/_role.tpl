{{/*
The Deployment of one vecdb role: (dict "root" $ "role" "coord|querynode|datanode|proxy" "host" LISTEN "port" PORT).
Every role: the image's `vecdb` with the role as its command, the settings file from the ConfigMap, S3 keys and the
cluster secret from Secrets, /healthz probes on the http port. A role that listens on $(POD_IP) tells the others that address (its
session in etcd); one on 0.0.0.0 would tell its pod name, which other pods cannot resolve.
*/}}
{{- define "vecdb.role" -}}
{{- $root := .root }}
{{- $v := index $root.Values .role }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "vecdb.fullname" $root }}-{{ .role }}
  labels:
    {{- include "vecdb.chartLabels" $root | nindent 4 }}
    {{- include "vecdb.roleSelector" . | nindent 4 }}
spec:
  replicas: {{ $v.replicas }}
  selector:
    matchLabels:
      {{- include "vecdb.roleSelector" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "vecdb.chartLabels" $root | nindent 8 }}
        {{- include "vecdb.roleSelector" . | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "vecdb.settings" $root | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: 30
      containers:
        - name: {{ .role }}
          image: {{ include "vecdb.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            - --log-level
            - {{ $root.Values.logLevel | quote }}
            - {{ .role }}
            - --config
            - /etc/vecdb/vecdb.yaml
            - --data-dir
            - /var/lib/vecdb
            - --host
            - {{ .host | quote }}
            - --port
            - {{ .port | quote }}
            - --http-port
            - {{ $root.Values.ports.http | quote }}
            {{- if ne .role "coord" }}
            - --node-id
            - $(POD_NAME)
            {{- end }}
          env:
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: POD_IP
              valueFrom:
                fieldRef:
                  fieldPath: status.podIP
            # internal RPC (coord, query and data nodes) is refused without it (docs/security.md)
            - name: VECDB_SECURITY__CLUSTER_SECRET
              valueFrom:
                secretKeyRef:
                  name: {{ include "vecdb.clusterSecret" $root }}
                  key: clusterSecret
            {{- with include "vecdb.s3Secret" $root }}
            - name: VECDB_STORAGE__S3_ACCESS_KEY
              valueFrom:
                secretKeyRef:
                  name: {{ . }}
                  key: accessKey
            - name: VECDB_STORAGE__S3_SECRET_KEY
              valueFrom:
                secretKeyRef:
                  name: {{ . }}
                  key: secretKey
            {{- end }}
            {{- with $root.Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: grpc
              containerPort: {{ .port }}
              protocol: TCP
            - name: http
              containerPort: {{ $root.Values.ports.http }}
              protocol: TCP
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            {{- toYaml $root.Values.probes.startup | nindent 12 }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            {{- toYaml $root.Values.probes.liveness | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /healthz
              port: http
            {{- toYaml $root.Values.probes.readiness | nindent 12 }}
          {{- with $v.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: /etc/vecdb
              readOnly: true
            - name: data
              mountPath: /var/lib/vecdb
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: config
          configMap:
            name: {{ include "vecdb.fullname" $root }}
        - name: data
          {{- if $v.cacheSize }}
          emptyDir:
            sizeLimit: {{ $v.cacheSize }}
          {{- else }}
          emptyDir: {}
          {{- end }}
        - name: tmp
          emptyDir: {}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
